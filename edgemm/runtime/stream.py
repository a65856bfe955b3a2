"""Streaming: capture threads -> sync + pre-processing -> inference + post-processing -> you.

    for r in edgemm.Stream("bundle/", video="camera:0", audio="mic:default"):
        print(r.t_capture, r.outputs, r.latency_ms["capture_to_result"])

Stages run in their own threads joined by bounded queues. Drop policy ``latest`` (default when a
source is live) keeps only the newest item in each queue, so results never lag behind live; ``all``
(default for files) blocks instead, so every frame yields a result. Each result carries its capture
time, per-stage times, capture-to-result latency and the drop counters. A source that fails while
streaming stops the stream: results already in flight are delivered, then the error is raised.
Network cameras reconnect with back-off instead (``reconnect=False``: a drop ends the stream).
Every wait is bounded: audio that does not reach a file frame's time within ``stall_ms`` (10 s for
files) is zero-filled and flagged; ``close()`` returns within ``close_timeout_s`` and releases a
source only once its capture thread has left it (a thread still blocked in a network read releases
its source itself when the read returns).
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import numpy as np

from ..errors import EdgemmError, SpecError
from ..frontends import native
from ..modalities.audio.params import AudioPreprocess
from ..modalities.registry import get_modality
from .sources import Frame, Source, SourceError, open_audio, open_video
from .sync import ENDED, NO_AUDIO, STALL_POLICIES, STALLED, AudioRing

POLICIES = ("latest", "all")
_END = object()
FILE_STALL_S = 10.0  # file sources: the longest wait for audio to reach a frame's time


class StreamError(EdgemmError):
    """A stream that stopped because a stage failed."""


@dataclass
class Result:
    """One frame's outcome. ``outputs``: top ``(label, score)`` per classification head; ``raw``: the
    model's outputs; ``latency_ms``: ``capture_to_result`` and one key per stage; ``flags``: what was
    not normal about the inputs (e.g. ``audio_before_start``: zero-filled audio)."""

    index: int
    t_capture: float
    outputs: dict[str, tuple[str, float]]
    raw: dict[str, np.ndarray]
    latency_ms: dict[str, float]
    dropped_frames: int
    flags: tuple[str, ...] = ()
    sync: dict[str, float] = field(default_factory=dict)
    frame: Optional[Frame] = None

    def to_json(self) -> dict[str, Any]:
        """The ``edgemm run --json-lines`` object (DESIGN.md)."""
        return {
            "index": self.index,
            "t_capture": round(self.t_capture, 6),
            "outputs": {h: ({"label": lab, "score": round(float(s), 6)} if math.isfinite(s) else
                            {"label": lab, "score": None, "nonfinite_score": True}) for h, (lab, s) in self.outputs.items()},
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "dropped_frames": self.dropped_frames,
            "flags": list(self.flags),
            "sync": {k: (round(v, 3) if math.isfinite(v) else None) for k, v in self.sync.items()},
        }


class _Job:
    __slots__ = ("frame", "feeds", "buffers", "lat", "flags", "sync", "t_stage")

    def __init__(self, frame: Frame):
        self.frame = frame
        self.feeds: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] | None = None  # the pool's feed buffers this job writes into
        self.lat: dict[str, float] = {}
        self.flags: list[str] = list(frame.flags)
        self.sync: dict[str, float] = {"video_gap_ms": frame.gap_s * 1e3} if frame.gap_s else {}
        self.t_stage = frame.t_wall


class _Channel:
    """Bounded queue between two stages. ``latest``: a full queue drops its oldest item (counted);
    ``all``: the producer waits. The end marker is never dropped."""

    def __init__(self, capacity: int, latest: bool, on_drop: Callable[[Any], None] | None = None):
        self.capacity = max(1, capacity)
        self.latest = latest
        self.on_drop = on_drop
        self.items: deque = deque()
        self.cond = threading.Condition()
        self.closed = False

    def put(self, item) -> bool:
        with self.cond:
            if item is not _END:
                if self.latest:
                    while len(self.items) >= self.capacity and self.items and self.items[0] is not _END:
                        old = self.items.popleft()
                        if self.on_drop:
                            self.on_drop(old)
                else:
                    while len(self.items) >= self.capacity and not self.closed:
                        self.cond.wait(0.1)
            if self.closed:
                return False
            self.items.append(item)
            self.cond.notify_all()
            return True

    def get(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while not self.items:
                if self.closed:
                    return _END
                remaining = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if remaining <= 0:
                    raise TimeoutError
                self.cond.wait(remaining)
            item = self.items.popleft()
            self.cond.notify_all()
            return item

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def _is_runtime(obj) -> bool:
    return hasattr(obj, "run") and (hasattr(obj, "inputs") or hasattr(obj, "graphs"))


class Stream:
    """Stream ``video`` (and ``audio``) sources through a bundle's engine.

    ``runtime_or_bundle``: a ``Runtime`` (from ``edgemm.load``) or a bundle directory (loaded with
    ``backend`` / ``precision``, closed with the stream). ``policy``: ``latest`` or ``all`` (default:
    ``latest`` when a source is live, else ``all``). ``realtime``: pace file sources like live ones.
    ``stall``: when audio has not reached a frame's time: ``wait`` up to ``stall_ms`` then zero-fill
    and flag, ``zero`` at once, or ``skip`` the frame after ``stall_ms`` (default ``stall_ms``: 50 ms
    live, 10 s for files). ``sync_tolerance_ms``: audio this close to the frame time counts as
    aligned (the skew is reported; default 20 ms live, 0 for files). ``callback``: called with each
    result from a delivery thread (``start()`` / ``wait()`` / ``run()``), else iterate the stream.
    ``reconnect``: network cameras reconnect with back-off after a drop (attempts and gaps in
    ``stats()["sources"]``, the first frame after a gap flagged ``video_reconnected``); False: a drop
    ends the stream with one line. ``source_timeout_s`` bounds every network connect and read.
    """

    def __init__(self, runtime_or_bundle, video: str | Source | None = None, audio: str | Source | None = None, *,
                 graph: str | None = None, constants: dict[str, dict[str, Any]] | None = None,
                 combine: Callable[[dict, dict], dict] | None = None, source: str | Source | None = None,
                 policy: str | None = None, backend: str | None = None, precision: str | None = None,
                 realtime: bool = False, stall: str = "wait", stall_ms: float | None = None,
                 sync_tolerance_ms: float | None = None, queue_size: int = 4, callback: Callable[[Result], Any] | None = None,
                 max_frames: int | None = None, keep_frames: bool = False, clock: Callable[[], float] | None = None,
                 audio_capacity_s: float | None = None, threads: int | None = None, reconnect: bool = True,
                 source_timeout_s: float = 10.0, reconnect_give_up_s: float | None = None, close_timeout_s: float = 2.0):
        if video is not None and source is not None:
            raise EdgemmError("pass the frame source once: video=URI (cameras, files) or source=URI (any paced input)")
        video = source if video is None else video
        if policy is not None and policy not in POLICIES:
            raise EdgemmError(f"unknown drop policy {policy!r}; use one of: {', '.join(POLICIES)}")
        if stall not in STALL_POLICIES:
            raise EdgemmError(f"unknown stall policy {stall!r}; use one of: {', '.join(STALL_POLICIES)}")
        self.clock = clock or time.monotonic
        self.callback = callback
        self.max_frames = max_frames
        self.keep_frames = keep_frames
        self._owns_runtime = not _is_runtime(runtime_or_bundle)
        self.close_timeout_s = close_timeout_s
        self._src_lock = threading.Lock()
        self._src_busy: set[int] = set()  # ids of sources a capture thread may still be inside
        self._src_closing = False
        self.video: Source | None = None
        self.audio: Source | None = None
        self.runtime = None
        self._loaded = None
        self.constants: dict[str, dict[str, np.ndarray]] = {}
        try:
            if self._owns_runtime:
                from .runtime import load

                self._loaded = load(runtime_or_bundle, backend=backend, precision=precision, threads=threads,
                                    graph=None if constants or graph is None else graph)
            else:
                self._loaded = runtime_or_bundle
            self.runtime, self.constants = self._per_frame_runtime(self._loaded, graph, constants)
            self.combine = combine
            self._bind_inputs(video, audio)
            self.video = video if isinstance(video, Source) else self._open_primary(
                video, clock=self.clock, pace=realtime, timeout_s=source_timeout_s, reconnect=reconnect,
                give_up_s=reconnect_give_up_s)
            if self.audio_input is not None:
                self.audio = audio if isinstance(audio, Source) else open_audio(audio, clock=self.clock, pace=realtime)
        except BaseException:
            self._close_resources()
            raise
        live = self.video.live or (self.audio is not None and self.audio.live)
        self.policy = policy or ("latest" if live else "all")
        self.live = live
        self.stall = stall
        if stall_ms is not None and not stall_ms >= 0:
            raise EdgemmError(f"stall_ms must be >= 0, got {stall_ms}")
        self.stall_s = stall_ms / 1000.0 if stall_ms is not None else (0.05 if live else FILE_STALL_S)
        if stall == "zero":
            self.stall_s = 0.0
        tol = sync_tolerance_ms if sync_tolerance_ms is not None else (20.0 if live else 0.0)
        self.ring: AudioRing | None = None
        if self.audio is not None:
            pre: AudioPreprocess = self.audio_input.preprocessing
            rate = int(self.audio.rate)
            self._audio_n = pre.n_samples if rate == pre.sample_rate else int(math.ceil(pre.window_s * rate)) + 64
            self._audio_core = int(round(pre.window_s * rate))
            cap = audio_capacity_s or max(4.0, 2 * pre.window_s + 1.0)
            self.ring = AudioRing(rate, cap, live=self.audio.live, clock=self.clock,
                                  backpressure=not self.audio.live and not realtime, tolerance_s=tol / 1000.0)
            # Incremental frontend: each sample resampled once, each STFT hop computed once (log-mel features;
            # the other features are computed from the window at each frame).
            self._frontend = native.StreamingLogMel(pre, rate) if pre.features == "log_mel" else None
            self._fed = 0  # source samples pushed into the frontend
            self._logmel = native.LogMelKernel(pre) if rate == pre.sample_rate and pre.features == "log_mel" else None
            if rate != pre.sample_rate:
                import scipy.signal  # noqa: F401 - resampling: import now, not inside the first frame's latency
        latest = self.policy == "latest"
        size = 1 if latest else max(1, queue_size)
        self._drops = {"capture": 0, "preprocess": 0, "sync_skip": 0}
        self.dropped_results = 0
        self._ch_frames = _Channel(size, latest, lambda j: self._count_drop("capture"))
        self._ch_pre = _Channel(size, latest, lambda j: self._count_drop("preprocess"))
        self._ch_out = _Channel(size if latest else max(8, queue_size), latest, self._count_result_drop)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._halt = threading.Event()  # a source failed or the frame budget is spent: stop capturing, drain
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False
        self._done = threading.Event()
        self.error: BaseException | None = None
        self._error_raised = False
        self.frames_captured = 0
        self.results = 0
        self._last: Result | None = None
        self._lat: deque = deque(maxlen=100_000)
        self._sync_lag: deque = deque(maxlen=100_000)

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _per_frame_runtime(loaded, graph: str | None, constants: dict | None):
        """The runtime that runs at every frame, and the outputs of the constant graphs (run once now).

        A bundle of several graphs (``edgemm.load`` gave ``.graph(name)``): ``graph`` names the per-frame one
        (default: the only graph ``constants`` does not name), each graph in ``constants`` runs once on its raw
        inputs (``{"text": {"input_ids": ["a photo of a 0", ...]}}``, pre-processed by that graph's own spec)."""
        graphs = list(getattr(loaded, "graphs", None) or []) if hasattr(loaded, "graph") and not hasattr(loaded, "artifact") else []
        constants = dict(constants or {})
        if not graphs:
            if constants:
                raise SpecError("constants= runs other graphs of a bundle once (e.g. the text encoder of a CLIP-style model); "
                                "this runtime has one graph: load the bundle with all its graphs (edgemm.load(B)) or drop constants=")
            return loaded, {}
        for g in constants:
            if g not in graphs:
                raise SpecError(f"constants names graph {g!r}, but the bundle has graphs {', '.join(graphs)}")
        if graph is None:
            rest = [g for g in graphs if g not in constants]
            if len(rest) != 1:
                raise SpecError(f"the bundle has graphs {', '.join(graphs)}: name the one that runs per frame (graph=...) "
                                "and give the others' inputs as constants={graph: {input: raw data}}")
            graph = rest[0]
        if graph in constants:
            raise SpecError(f"graph {graph!r} runs per frame, so it cannot also be a constant")
        per_frame = loaded.graph(graph)
        outputs: dict[str, dict[str, np.ndarray]] = {}
        for g, raw in constants.items():
            rt = loaded.graph(g)
            if not isinstance(raw, dict) or not raw:
                raise SpecError(f"constants[{g!r}] must map the graph's input names to raw data (e.g. a list of prompts)")
            feeds = rt.preprocess(**raw)
            outputs[g] = rt.run(feeds)
        return per_frame, outputs

    def _open_primary(self, uri, **kw):
        """The source of the paced input: a URI scheme its modality opens itself (a plugin's sensor), else a video source."""
        m = get_modality(self.frame_input.modality)
        scheme = uri.split(":", 1)[0] if isinstance(uri, str) and ":" in uri else None
        if scheme is not None and scheme in m.schemes:
            return m.open_source(uri, clock=kw.get("clock"), pace=kw.get("pace", False), t=self.frame_input)
        return open_video(uri, **kw)

    def _bind_inputs(self, video, audio) -> None:
        inputs = self.runtime.inputs
        paced = [t for t in inputs if t.preprocessing is not None and get_modality(t.modality).paced]
        self.frame_input = paced[0] if paced else None
        self.image_input = self.frame_input  # the name older code reads
        self.audio_input = next((t for t in inputs if t.modality == "audio" and isinstance(t.preprocessing, AudioPreprocess)), None)
        names = [t.name for t in inputs]
        other = [t.name for t in inputs if t not in (self.frame_input, self.audio_input)]
        if other:
            raise SpecError(f"Stream feeds one paced input (frames, clips, sensor windows) and one audio input; this model also "
                            f"takes {', '.join(other)} (run it with Runtime.run, or give another graph's inputs as constants=)")
        if self.frame_input is None:
            raise SpecError(f"Stream needs a model with a paced input (an image, a video clip or a plugin sensor: frames set the "
                            f"pace); this one takes {', '.join(names)}")
        if video is None:
            raise SpecError(f"the model's input {self.frame_input.name!r} needs a video source: pass video=URI "
                            "(camera:0, a video file, rtsp://..., http://....mjpg)")
        if self.audio_input is not None and audio is None:
            raise SpecError(f"the model's input {self.audio_input.name!r} needs an audio source: pass audio=URI "
                            "(mic:default, a wav/flac file)")
        self._adapter = get_modality(self.frame_input.modality).stream_adapter(self.frame_input)
        if self._adapter is None:
            raise SpecError(f"the {self.frame_input.modality} modality has no stream adapter; run it with Runtime.run")
        # Feed buffers the adapters write into, reused once inference has read them (the same addresses
        # frame after frame: no allocation on the hot path). A dropped job's buffers are not returned;
        # the pool allocates a new set when it is empty.
        self._buffer_pool: deque = deque()
        self._buffer_shapes = {self.frame_input.name: tuple(self._adapter.out_shape)}
        if self.audio_input is not None:
            a: AudioPreprocess = self.audio_input.preprocessing
            self._buffer_shapes[self.audio_input.name] = ((1, 1, a.n_mels, a.n_frames) if a.features == "log_mel"
                                                          else self.audio_input.concrete_shape(1))

    def _take_buffers(self) -> dict[str, np.ndarray]:
        try:
            return self._buffer_pool.pop()
        except IndexError:
            return {k: np.empty(shape, np.float32) for k, shape in self._buffer_shapes.items()}

    def _count_drop(self, where: str) -> None:
        with self._lock:
            self._drops[where] += 1

    def _count_result_drop(self, _r) -> None:
        with self._lock:
            self.dropped_results += 1

    @property
    def dropped_frames(self) -> int:
        with self._lock:
            return sum(self._drops.values())

    # ------------------------------------------------------------------ threads
    def start(self) -> "Stream":
        """Start capturing (iteration and ``run`` call it for you)."""
        if self._started:
            return self
        if self._closed:
            raise StreamError("this Stream is closed; create a new one")
        self._started = True
        if self.video.pace or (self.audio is not None and self.audio.pace):
            epoch = self.clock() + 0.02
            self.video.set_epoch(epoch)
            if self.audio is not None:
                self.audio.set_epoch(epoch)
        targets = [("video", self._video_loop), ("pre", self._pre_loop), ("infer", self._infer_loop)]
        with self._src_lock:
            self._src_busy.add(id(self.video))
            if self.audio is not None:
                self._src_busy.add(id(self.audio))
        if self.audio is not None:
            targets.insert(1, ("audio", self._audio_loop))
        if self.callback is not None:
            targets.append(("deliver", self._deliver_loop))
        for name, fn in targets:
            th = threading.Thread(target=fn, name=f"edgemm-{name}", daemon=True)
            self._threads.append(th)
            th.start()
        return self

    def _fail(self, exc: BaseException, stage: str, *, drain: bool = False) -> None:
        if isinstance(exc, EdgemmError):
            err: BaseException = exc
        else:
            err = StreamError(f"{stage} stage failed: {type(exc).__name__}: {exc}")
            err.__cause__ = exc
        with self._lock:
            if self.error is None:
                self.error = err
        self._halt.set()
        if self.ring is not None:
            self.ring.end()
        if not drain:
            self._stop.set()
            for ch in (self._ch_frames, self._ch_pre, self._ch_out):
                ch.close()

    def _video_loop(self) -> None:
        try:
            while not self._stop.is_set() and not self._halt.is_set():
                frame = self.video.read()
                if frame is None:
                    break
                self.frames_captured += 1
                self._ch_frames.put(_Job(frame))
                if self.max_frames is not None and self.frames_captured >= self.max_frames:
                    break
        except BaseException as exc:  # noqa: BLE001 - reported to the consumer
            if not self._stop.is_set():
                self._fail(exc if isinstance(exc, EdgemmError) else SourceError(
                    f"video source {self.video.uri!r} failed after {self.frames_captured} frames: {type(exc).__name__}: {exc}"),
                    "video", drain=True)
        finally:
            self._ch_frames.put(_END)
            self._leave(self.video)

    def _audio_loop(self) -> None:
        blocks = 0
        try:
            while not self._stop.is_set() and not self._halt.is_set():
                block = self.audio.read()
                if block is None:
                    break
                blocks += 1
                self.ring.write(block.samples, block.t)
        except BaseException as exc:  # noqa: BLE001
            if not self._stop.is_set():
                self._fail(exc if isinstance(exc, EdgemmError) else SourceError(
                    f"audio source {self.audio.uri!r} failed after {blocks} blocks: {type(exc).__name__}: {exc}"),
                    "audio", drain=True)
        finally:
            self.ring.end()
            self._leave(self.audio)

    def _pre_loop(self) -> None:
        try:
            while True:
                job = self._ch_frames.get()
                if job is _END:
                    break
                t0 = self.clock()
                job.lat["queue"] = (t0 - job.frame.t_wall) * 1e3
                feeds = job.feeds
                job.buffers = bufs = self._take_buffers()
                if self.ring is not None:
                    window, info = self.ring.window(job.frame.t, self._audio_core, wait_s=self.stall_s, copy=False,
                                                    keep=self._audio_n)
                    if self.stall == "skip" and (STALLED in info.flags or ENDED in info.flags):
                        self._count_drop("sync_skip")
                        self._buffer_pool.append(bufs)
                        continue
                    self.ring.release_before(self.ring.index_at(job.frame.t) - self._audio_n)
                    job.flags.extend(info.flags)
                    job.sync.update(audio_lag_ms=info.lag_s * 1e3, skew_ms=info.skew_s * 1e3, wait_ms=info.waited_s * 1e3,
                                    drift_ppm=self.ring.drift_ppm() if self.ring.live else 0.0)
                    if math.isfinite(info.lag_s):
                        self._sync_lag.append(info.lag_s * 1e3)
                    t1 = self.clock()
                    job.lat["sync"] = (t1 - t0) * 1e3
                    feeds[self.audio_input.name] = self._audio_features(job.frame.t, info, bufs[self.audio_input.name])
                    job.sync["skew_ms"] += self._snap_s * 1e3
                    t2 = self.clock()
                    job.lat["preprocess_audio"] = (t2 - t1) * 1e3
                    t0 = t1
                t1 = self.clock()
                feeds[self.frame_input.name] = self._adapter(job.frame, bufs[self.frame_input.name])
                if getattr(self._adapter, "padded", False):
                    job.flags.append("clip_padded")  # the clip's first frames repeat until the buffer is full
                t2 = self.clock()
                job.lat["preprocess_image"] = (t2 - t1) * 1e3
                job.lat["preprocess"] = (t2 - t0) * 1e3
                job.t_stage = t2
                if not self._ch_pre.put(job):
                    break
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc, "pre-processing")
        finally:
            self._halt.set()  # no frame needs audio any more: stop the audio capture
            if self.ring is not None:
                self.ring.close()
            self._ch_pre.put(_END)

    def _audio_features(self, t: float, info, out: np.ndarray | None = None) -> np.ndarray:
        """The log-mel of the window that ends at frame time ``t``: the streaming frontend is fed the
        audio that arrived since the previous frame, and the window's end is snapped to its hop grid
        (the snap is added to ``skew_ms``). A window older than the frontend keeps (or no audio at
        all yet) goes through the one-shot frontend instead."""
        fe = self._frontend
        if fe is None:  # waveform / Whisper features: from the window that ends at the frame
            from ..modalities.audio import features, fit_rank

            self._snap_s = 0.0
            window, _ = self.ring.window(t, self._audio_n, wait_s=0.0, core=self._audio_core)
            res = fit_rank(features(np.asarray(window, np.float32), self.ring.rate, self.audio_input.preprocessing), self.audio_input)
            if out is not None and out.shape == res.shape:
                out[...] = res
                return out
            return res
        if NO_AUDIO not in info.flags:
            if info.available_end > self._fed:
                fe.push(self.ring.samples(self._fed, info.available_end))
                self._fed = info.available_end
            exact = fe.resampled_index(info.end)
            end = fe.hop_aligned_end(exact)
            feats = fe.window(end, out)
            if feats is not None:
                self._snap_s = (exact - end) / fe.cfg.sample_rate
                return feats
        self._snap_s = 0.0
        window, _ = self.ring.window(t, self._audio_n, wait_s=0.0, core=self._audio_core)
        if self._logmel is not None:
            return self._logmel(window)
        from ..frontends.audio import preprocess_audio

        return preprocess_audio(window, self.ring.rate, self.audio_input.preprocessing, frontend=native.log_mel)

    def _infer_loop(self) -> None:
        labels = getattr(self.runtime, "labels", None)
        top = native.TopLabels(self.runtime.outputs) if hasattr(self.runtime, "outputs") else None
        try:
            while True:
                job = self._ch_pre.get()
                if job is _END:
                    break
                t0 = self.clock()
                job.lat["infer_queue"] = (t0 - job.t_stage) * 1e3
                raw = self.runtime.run(job.feeds)
                t1 = self.clock()
                if job.buffers is not None:
                    self._buffer_pool.append(job.buffers)  # inference has read them
                    job.buffers = None
                outputs = top(raw) if top is not None else {h: v[0] for h, v in labels(raw).items()} if labels else {}
                if self.combine is not None:
                    raw = {**raw, **self.combine(raw, self.constants)}
                    outputs.update(top_of(raw, getattr(self.combine, "labels", None) or {}))
                t2 = self.clock()
                job.lat["infer"] = (t1 - t0) * 1e3
                job.lat["postprocess"] = (t2 - t1) * 1e3
                job.lat["capture_to_result"] = (t2 - job.frame.t_wall) * 1e3
                r = Result(job.frame.index, job.frame.t, outputs, raw, job.lat, self.dropped_frames, tuple(job.flags),
                           job.sync, job.frame if self.keep_frames else None)
                self.results += 1
                self._last = r
                self._lat.append(job.lat["capture_to_result"])
                if not self._ch_out.put(r):
                    break
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc, "inference")
        finally:
            self._ch_out.put(_END)

    def _deliver_loop(self) -> None:
        try:
            while True:
                r = self._ch_out.get()
                if r is _END:
                    break
                self.callback(r)
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc, "callback")
        finally:
            self._done.set()

    # ------------------------------------------------------------------ consumer API
    def __iter__(self) -> Iterator[Result]:
        if self.callback is not None:
            raise StreamError("this Stream delivers to its callback; iterate a Stream created without callback=")
        self.start()
        try:
            while True:
                r = self._ch_out.get()
                if r is _END:
                    break
                yield r
        finally:
            self.close()
        self._raise_error()

    def latest(self) -> Result | None:
        """The newest result so far (None before the first): a control loop's non-blocking read."""
        self.start()
        if self.error is not None and self._stop.is_set():
            self._raise_error()
        return self._last

    def wait(self, timeout: float | None = None) -> bool:
        """Callback form: block until the stream ends (True) or ``timeout`` passes (False); raises
        the stream's error, if any, once it has ended."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.wait(0.1):
            if deadline is not None and time.monotonic() >= deadline:
                return False
        self.close()
        self._raise_error()
        return True

    def run(self) -> None:
        """Callback form, blocking: start, deliver every result, return at the end of the sources."""
        if self.callback is None:
            raise StreamError("run() needs a callback: Stream(..., callback=fn)")
        try:
            self.wait()
        finally:
            self.close()

    def _raise_error(self) -> None:
        if self.error is not None and not self._error_raised:
            self._error_raised = True
            raise self.error

    def stats(self) -> dict[str, Any]:
        """Counters and latency percentiles so far."""
        lat = np.asarray(self._lat, dtype=np.float64)
        lag = np.asarray(self._sync_lag, dtype=np.float64)
        pct = (lambda a, q: round(float(np.percentile(a, q)), 3) if len(a) else None)
        with self._lock:
            drops = dict(self._drops)
        return {
            "frames_captured": self.frames_captured, "results": self.results, "dropped_frames": sum(drops.values()),
            "dropped_by_stage": drops, "dropped_results": self.dropped_results, "policy": self.policy,
            "capture_to_result_ms": {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99), "max": pct(lat, 100)},
            "audio_lag_ms": {"p50": pct(lag, 50), "p99": pct(lag, 99)} if self.ring is not None else None,
            "drift_ppm": self.ring.drift_ppm() if self.ring is not None and self.ring.live else None,
            "audio_discontinuities": self.ring.discontinuities if self.ring is not None else None,
            "native_preprocessing": native.available(),
            "sources": {k: src.stats() for k, src in (("video", self.video), ("audio", self.audio)) if src is not None},
        }

    # ------------------------------------------------------------------ shutdown
    def _leave(self, src: Source | None) -> None:
        """A capture thread is out of ``src.read()`` for good: if the stream is closing, release it here."""
        if src is None:
            return
        with self._src_lock:
            self._src_busy.discard(id(src))
            release = self._src_closing
        if release:
            self._close_source(src)

    @staticmethod
    def _close_source(src: Source) -> None:
        try:
            src.close()
        except Exception:  # noqa: BLE001 - a broken device must not hide the real error
            pass

    def _close_resources(self) -> None:
        """Release every source no capture thread is inside (the others release themselves on leaving)."""
        with self._src_lock:
            self._src_closing = True
            idle = [src for src in (self.video, self.audio) if src is not None and id(src) not in self._src_busy]
        for src in idle:
            self._close_source(src)
        if self._owns_runtime and self._loaded is not None:
            self._loaded.close()

    def close(self) -> None:
        """Stop capturing and every thread, release the sources (and the runtime if the stream loaded
        it). Bounded by ``close_timeout_s``: a capture thread still blocked in a source (a network read)
        is interrupted, and if it has not left by then it releases its source itself when it does."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._halt.set()
        if self.ring is not None:
            self.ring.close()
        for ch in (self._ch_frames, self._ch_pre, self._ch_out):
            ch.close()
        for src in (self.video, self.audio):
            if src is not None:
                try:
                    src.interrupt()
                except Exception:  # noqa: BLE001
                    pass
        deadline = time.monotonic() + self.close_timeout_s
        for th in self._threads:
            if th is not threading.current_thread():
                th.join(timeout=max(0.0, deadline - time.monotonic()))
        self._close_resources()
        self._done.set()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self) -> str:
        return (f"Stream(video={getattr(self.video, 'uri', None)!r}, audio={getattr(self.audio, 'uri', None)!r}, "
                f"policy={self.policy!r})")


def top_of(raw: dict[str, np.ndarray], labels: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """``(label, softmax score)`` of the first row of each output named in ``labels`` (output -> class names)."""
    out = {}
    for name, names in labels.items():
        if name not in raw:
            continue
        row = np.asarray(raw[name], np.float64).reshape(-1, np.shape(raw[name])[-1])[0]
        p = np.exp(row - row.max())
        p /= p.sum()
        i = int(p.argmax())
        out[name] = (str(names[i]) if i < len(names) else str(i), float(p[i]))
    return out


class ZeroShot:
    """``combine=`` for a CLIP-style bundle: ``logits = scale * normalise(image) @ normalise(text).T`` from the per-frame
    graph's ``image`` output and the constant graph's ``text`` output (one row per prompt); with ``labels`` (one per
    prompt) each result's ``outputs[name]`` is the best prompt's label and its softmax score."""

    def __init__(self, image: str = "image_embeds", text: str = "text_embeds", *, graph: str = "text",
                 labels: list[str] | None = None, scale: float = 100.0, name: str = "zero_shot", normalize: bool = True):
        self.image, self.text, self.graph, self.scale, self.name, self.normalize = image, text, graph, float(scale), name, normalize
        self.labels = {name: list(labels)} if labels is not None else {}

    def __call__(self, frame_outputs: dict, constants: dict) -> dict:
        if self.image not in frame_outputs:
            raise SpecError(f"zero-shot: the per-frame graph has no output {self.image!r}; outputs: {', '.join(frame_outputs)}")
        const = constants.get(self.graph) or {}
        if self.text not in const:
            raise SpecError(f"zero-shot: constants of graph {self.graph!r} have no output {self.text!r}; "
                            f"give that graph's prompts as constants={{{self.graph!r}: {{...}}}}")
        a, b = np.asarray(frame_outputs[self.image], np.float32), np.asarray(const[self.text], np.float32)
        if self.normalize:
            a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
            b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
        return {self.name: self.scale * a @ b.T}
