"""One benchmark measurement in a fresh process (clean thread pools, honest peak RSS).

    python -m edgemm.bench.worker '{"bundle": ..., "artifact": ..., "backend": ..., "batch": 1, ...}'

Prints one JSON object: latencies (ms) of every timed call and the process's peak RSS.
"""
from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np


def _feeds(bundle, batch: int):
    """``batch`` held-out samples (the bundle's parity samples, repeated if needed)."""
    path = bundle.file(bundle.manifest.get("parity_samples", {}).get("path", "data/parity_samples.npz"), "parity samples path")
    from ..safeio import read_npz

    data = bundle.spec.check_feeds(read_npz(path, "parity samples", need_rows=True, fix="re-export the bundle"), f"{path}: ")
    n = len(next(iter(data.values())))
    idx = np.arange(batch) % n
    return {k: v[idx] for k, v in data.items()}


def measure(job: dict) -> dict:
    from ..trust import allow_code

    with allow_code(bool(job.get("trust_code"))):  # the parent decided (edgemm.trust); the job says so
        return _measure(job)


def _measure(job: dict) -> dict:
    from ..backends.base import RunnerOptions
    from ..backends.registry import get_backend, reference_backend
    from ..bundle import Bundle

    bundle = Bundle.open(job["bundle"], verify_hashes=False)
    if job.get("graph"):
        bundle = bundle.graph(job["graph"])  # the graph's own spec and parity samples
    art = next((a for a in bundle.artifacts if a.path == job["artifact"] and a.backend == job["backend"]), None)
    common = dict(threads=job["threads"], spin=job.get("spin"), throughput=job["mode"] == "throughput")
    device = get_backend(job["backend"]).device
    # the artifact's own recorded options (what the export probed for it, Backend.probe_runner), as edgemm.load runs it
    opts = RunnerOptions.for_artifact(art, device, **common) if art is not None else \
        RunnerOptions(precision=job["precision"], device=device, **common)
    if get_backend(job["backend"]).reference and job.get("factory"):
        from ..trust import resolve_factory

        module = resolve_factory(job["factory"])(**({"checkpoint": job["checkpoint"]} if job.get("checkpoint") else {}))
        runner = reference_backend().runner_for_module(module, bundle.spec, opts)
    else:
        runner = get_backend(job["backend"]).create_runner(bundle.file(job["artifact"], "artifact path"), bundle.spec, opts)

    if job["mode"] == "stream":  # the Stream runtime on live-paced sources (edgemm/bench/live.py)
        from .live import measure_stream

        out = measure_stream(job, bundle, runner, _feeds(bundle, 1))
        return {**out, "peak_rss_mb": peak_rss_mb()}
    if job["mode"] == "model":
        return {"latencies_ms": _model_loop(job, bundle, runner)(), "peak_rss_mb": peak_rss_mb()}
    if job["mode"] == "throughput":
        return {**_throughput(job, bundle, runner), "peak_rss_mb": peak_rss_mb()}
    return _end_to_end(job, bundle, runner)  # the streaming path, one video frame at a time at the stream's fps


def _model_loop(job: dict, bundle, runner, batch: int | None = None):
    """``block()``: the latencies (ms) of one block of model calls (pre-processed tensors in)."""
    feeds = _feeds(bundle, batch or job["batch"])

    def call():
        runner.infer(feeds, check=False)

    return _timed(job, call)


def _timed(job: dict, call, on_result=None):
    """``block(limit)`` -> latencies (ms) of ``call`` for ``limit`` seconds (default: the job's seconds,
    and at least ``min_iters`` calls), warmed up before the first block; ``on_result`` gets each
    call's return value."""
    state = {"warm": False}

    def block(limit: float | None = None) -> list[float]:
        budget, least = (job["seconds"], job.get("min_iters", 30)) if limit is None else (limit, 1)
        if not state["warm"]:
            for _ in range(job.get("warmup", 10)):
                call()
            state["warm"] = True
        times = []
        start = time.perf_counter()
        while len(times) < least or time.perf_counter() - start < budget:
            t0 = time.perf_counter()
            r = call()
            times.append((time.perf_counter() - t0) * 1e3)
            if on_result is not None:
                on_result(r)
            if len(times) >= job.get("max_iters", 5000):
                break
        return times

    return block


def _throughput(job: dict, bundle, runner) -> dict:
    """``streams`` threads calling one runner at once (the runtime is thread-safe by contract), each with its own
    batch-1 feeds, for the job's seconds after a warm-up: every call's latency and the calls completed per second."""
    import threading

    n = int(job["streams"])
    feeds = [_feeds(bundle, job["batch"]) for _ in range(n)]
    for f in feeds:  # warm-up (and, for OpenVINO, one infer request per stream created before timing)
        for _ in range(max(1, job.get("warmup", 10) // n)):
            runner.infer(f, check=False)
    latencies: list[list[float]] = [[] for _ in range(n)]
    errors: list[BaseException] = []
    start = threading.Barrier(n + 1)
    window = {}

    def loop(i: int) -> None:
        try:
            start.wait()  # every stream starts with the clock
            while time.perf_counter() < window["end"]:
                t0 = time.perf_counter()
                runner.infer(feeds[i], check=False)
                latencies[i].append((time.perf_counter() - t0) * 1e3)
        except BaseException as exc:  # re-raised below: this worker's failure, reported by the parent
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    window["end"] = t0 + job["seconds"]
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    calls = sum(len(x) for x in latencies)
    return {"latencies_ms": [v for x in latencies for v in x], "calls": calls, "elapsed_s": elapsed}


STAGES = ("capture", "preprocess_image", "preprocess_audio", "model", "postprocess")


def _end_to_end(job: dict, bundle, runner) -> dict:
    """What a user of ``edgemm.Stream`` pays per video frame: a camera frame + the audio that arrived
    since the previous frame (a continuous recording of the evaluation samples at their own rate,
    ``fps`` frames per second) -> capture (the frame and the new audio block copied out of the
    source buffers) -> pre-processing per modality (the C image kernel; the incremental audio
    frontend: resample the new audio, new STFT hops, the window that ends at the frame), written
    into feed buffers that are reused frame after frame, as Stream's pool does -> model ->
    post-processing (top label per head). Per-stage times are recorded for every frame."""
    from ..frontends import native
    from ..modalities.registry import get_modality
    from ..runtime.runtime import Runtime

    raw = dict(np.load(job["raw"], allow_pickle=False))
    art = next(a for a in bundle.artifacts if a.path == job["artifact"] and a.backend == job["backend"])
    rt = Runtime(bundle, art, runner=runner)
    fps = float(job.get("fps") or 30.0)
    feeds_fixed, images, audio = {}, None, None
    for t in bundle.spec.inputs:
        if t.preprocessing is None:
            continue
        modality = get_modality(t.modality)
        if images is None and modality.paced:  # the stream's adapter: the C image kernel, a clip buffer, a plugin's
            images = (t.name, raw[t.name], modality.stream_adapter(t))
        elif t.modality == "audio" and t.preprocessing.features == "log_mel":
            from ..frontends.audio import to_float_waveform

            if f"{t.name}.sample_rate" not in raw:
                raise SystemExit(f"end_to_end: the raw audio of {t.name!r} has no {t.name}.sample_rate")
            rate = int(raw[f"{t.name}.sample_rate"])
            stream = np.ascontiguousarray(to_float_waveform(raw[t.name]).reshape(-1))
            audio = (t.name, stream, rate, native.StreamingLogMel(t.preprocessing, rate))
        else:  # other inputs (text, other audio features): pre-processed once, as a stream would keep them
            value = raw[t.name][0]
            if t.modality == "audio":
                value = (value, int(raw[f"{t.name}.sample_rate"]))
            elif t.modality == "text":
                value = str(value)
            feeds_fixed.update(rt.preprocess(**{t.name: value}))
    if images is None:
        raise SystemExit("end_to_end needs a paced input (an image, a clip, a sensor: frames set the pace)")
    img_buf = np.empty(images[2].out_shape, np.float32)
    audio_buf = np.empty(audio[3].out_shape, np.float32) if audio is not None else None
    top = native.TopLabels(bundle.spec.outputs)  # what Stream does per frame (Runtime.labels' answer for sample 0)
    state = {"i": 0, "fed": 0}
    stages = {k: [] for k in STAGES}
    clock = time.perf_counter

    def frame():
        i = state["i"]
        state["i"] += 1
        t0 = clock()
        img = np.array(images[1][int(i / fps) % len(images[1])])  # a new frame buffer, as a camera delivers
        if audio is not None:
            name, stream, rate, fe = audio
            end = int(round((i + 1) / fps * rate))
            a, b = state["fed"] % len(stream), end % len(stream)
            block = stream[a:b].copy() if a <= b else np.concatenate([stream[a:], stream[:b]])
            state["fed"] = end
        t1 = clock()
        feeds = dict(feeds_fixed)
        feeds[images[0]] = images[2](img, img_buf)
        t2 = clock()
        if audio is not None:
            fe.push(block)
            feeds[name] = fe.window(fe.hop_aligned_end(fe.resampled_index(end)), audio_buf)
        t3 = clock()
        out = rt._runner.infer(feeds, check=False)
        t4 = clock()
        top(out)
        t5 = clock()
        return t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4

    def keep(parts):
        for k, v in zip(STAGES, parts):
            stages[k].append(v * 1e3)

    frames = _timed(job, frame, keep)
    model_batch = job.get("with_model")
    if not model_batch:
        times = frames()
        extra = {}
    else:
        # The model alone, interleaved with the frames in this process on the same runner: the ratio
        # end_to_end / model is then free of the process-to-process spread (the same model's p50 moves
        # by 0.6-1.3 ms between fresh processes on a 2-core machine).
        model = _model_loop(job, bundle, rt._runner, model_batch)
        times, model_times = [], []
        block_s = job["seconds"] / 6
        for _ in range(6):
            model_times += model(block_s)
            times += frames(block_s)
        extra = {"model_latencies_ms": model_times}
    if audio is None:
        del stages["preprocess_audio"]
    return {"latencies_ms": times, "stages_ms": stages, "fps": fps, "peak_rss_mb": peak_rss_mb(),
            "native_preprocessing": native.available(), **extra}


def peak_rss_mb() -> float:
    """This process's own peak RSS. ``ru_maxrss`` is inherited across fork+exec on Linux (a child would
    report its parent's peak), so read VmHWM, which starts afresh with the exec'd image."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    """Print the measurement; a failure is one line on stderr (the parent quotes the last line)."""
    from ..errors import EdgemmError, one_line

    try:
        print(json.dumps(measure(json.loads(sys.argv[1]))))
    except EdgemmError as exc:
        print(f"edgemm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # keep the traceback for -v in the parent's log, and end with one line
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(one_line(f"{type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
