"""Capture sources chosen by URI: cameras, video files, network cameras, microphones, audio files,
synthetic streams.

Every item carries its capture time ``t`` in seconds. Live sources stamp it on one monotonic clock
(``time.monotonic`` unless a ``clock`` is given), file sources stamp the media time from the start of
the file. ``t_wall`` is the clock time at which the source handed the item over (the origin of the
capture-to-result latency). File sources read as fast as possible, or paced like a live source
(``pace=True``: item ``t`` is released at ``epoch + t``).

Video URIs: ``camera:0`` / ``/dev/video0`` (OpenCV/V4L2), ``rtsp://...`` (OpenCV/FFmpeg),
``http(s)://...`` (MJPEG over HTTP, as IP cameras serve it; other HTTP streams go to OpenCV),
a video file path (``file:`` prefix optional), ``synthetic:video?fps=30&size=640x480&frames=300&live=1``.
Audio URIs: ``mic:default`` / ``mic:N`` / ``mic:NAME`` (PortAudio via sounddevice), a wav/flac/ogg
path, ``synthetic:audio?rate=16000&freq=440&seconds=10&block=320&live=1``.
"""
from __future__ import annotations

import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, urlparse

import numpy as np

from ..errors import EdgemmError

Clock = Callable[[], float]

VIDEO_URI_HELP = "camera:N, /dev/videoN, a video file, rtsp://..., http://....mjpg or synthetic:video?fps=30"
AUDIO_URI_HELP = "mic:default, mic:N, a wav/flac file or synthetic:audio?rate=16000"


class SourceError(EdgemmError):
    """A capture source that cannot be opened or that failed while streaming."""


@dataclass
class Frame:
    """One video frame. ``image`` is HxWx3 uint8 in channel order ``order`` (OpenCV decodes BGR;
    the pre-processing fuses the swap to the model's order). A plugin modality's source (edgemm.modalities)
    delivers its own items the same way: ``image`` is then what its stream adapter takes (a sensor window)."""

    image: np.ndarray
    t: float
    index: int
    t_wall: float
    order: str = "RGB"
    flags: tuple[str, ...] = ()  # e.g. ``video_reconnected`` on the first frame after a network drop
    gap_s: float = 0.0  # capture gap before this frame (a reconnect), 0 otherwise

    def rgb(self) -> np.ndarray:
        return self.image if self.order == "RGB" else np.ascontiguousarray(self.image[..., ::-1])


@dataclass
class AudioBlock:
    """Consecutive mono float32 samples; ``t`` is the capture time of the first sample."""

    samples: np.ndarray
    t: float
    rate: int
    t_wall: float


class Source:
    """Base class: ``open()``, ``read()`` -> item, or None at the end of a finite source, ``close()``."""

    kind = "video"
    live = True

    def __init__(self, uri: str, *, clock: Clock | None = None, pace: bool = False):
        self.uri = uri
        self.clock: Clock = clock or time.monotonic
        self.pace = pace and not self.live
        self.epoch: float | None = None  # wall time of media time 0 when paced
        self.count = 0  # items delivered
        self._closed = threading.Event()

    # -- lifecycle
    def open(self) -> "Source":
        return self

    def read(self):
        raise SourceError(f"{type(self).__name__} cannot read")

    def close(self) -> None:
        """Release the device / file / connection. ``Stream`` calls it only once no capture thread
        is inside ``read()`` any more (after ``interrupt()``)."""
        self._closed.set()

    def interrupt(self) -> None:
        """Make a ``read()`` blocked in another thread return soon (None), without releasing anything."""
        self._closed.set()

    def stats(self) -> dict:
        """Counters for ``Stream.stats()`` (items delivered, plus what the source kind knows)."""
        return {"items": self.count}

    def set_epoch(self, epoch: float) -> None:
        """Paced file sources release media time ``t`` at ``epoch + t`` (shared by a Stream's sources)."""
        self.epoch = epoch

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    # -- helpers
    def _wait_until_media_time(self, t: float) -> None:
        if not self.pace:
            return
        if self.epoch is None:
            self.epoch = self.clock() - t
        delay = self.epoch + t - self.clock()
        if delay > 0:
            self._closed.wait(delay)

    def _fail(self, what: str, fix: str = "") -> SourceError:
        return SourceError(f"{self.kind} source {self.uri!r}: {what}" + (f"; {fix}" if fix else ""))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise SourceError(f"video sources need OpenCV ({exc}); install it with: pip install opencv-python-headless") from None
    return cv2


# ----------------------------------------------------------------------------------------- video

class OpenCVVideoSource(Source):
    """Cameras, video files and RTSP/other network streams through ``cv2.VideoCapture``."""

    def __init__(self, uri: str, target, *, live: bool, clock: Clock | None = None, pace: bool = False,
                 timeout_s: float = 10.0):
        self.live = live
        super().__init__(uri, clock=clock, pace=pace)
        self.target = target
        self.timeout_s = timeout_s
        self.cap = None
        self.fps = 0.0
        self.frame_count = 0
        self._last_t = 0.0

    def open(self) -> "OpenCVVideoSource":
        cv2 = _cv2()
        if isinstance(self.target, str) and not self.live and not Path(self.target).is_file():
            raise self._fail("no such video file", "check the path")
        params = []
        if isinstance(self.target, str) and "://" in self.target:
            ms = int(self.timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        quiet = getattr(getattr(cv2, "utils", None), "logging", None)
        level = quiet.getLogLevel() if quiet else None
        if quiet:  # OpenCV's own warnings on a failed open would repeat our one-line error
            quiet.setLogLevel(quiet.LOG_LEVEL_ERROR)
        try:
            cap = cv2.VideoCapture(self.target, cv2.CAP_ANY, params) if params else cv2.VideoCapture(self.target)
        finally:
            if quiet:
                quiet.setLogLevel(level)
        if not cap.isOpened():
            cap.release()
            if isinstance(self.target, int):
                raise self._fail(f"cannot open camera {self.target}",
                                 "is a camera connected and readable by this user? (ls -l /dev/video*)")
            if self.live:
                raise self._fail("cannot open the network stream", "check the URL, credentials and that the camera is reachable")
            raise self._fail("OpenCV cannot decode this file", "is it a video file? (try: ffprobe FILE)")
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a backlog
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if not self.live and not self.fps > 0:
            cap.release()
            raise self._fail("the file reports no frame rate", "re-mux it with a constant frame rate (ffmpeg -i IN -r 30 OUT)")
        self.cap = cap
        return self

    def _media_time(self) -> float:
        """The grabbed frame's presentation time from the container (variable-frame-rate and sparse
        files keep their real timing); ``count / fps`` when the container has no timestamps, and never
        earlier than the previous frame's time."""
        pos = self.cap.get(_cv2().CAP_PROP_POS_MSEC)
        t = pos / 1000.0 if pos is not None and pos == pos and pos >= 0 else self.count / self.fps
        if self.count and t <= self._last_t:
            t = self._last_t + (1.0 / self.fps if pos <= 0 else 1e-6)  # no (or repeated) timestamps
        self._last_t = t
        return t

    def read(self) -> Optional[Frame]:
        if self.cap is None:
            raise self._fail("read before open")
        if self._closed.is_set():
            return None
        ok = self.cap.grab()  # stamp at grab, before the decode
        now = self.clock()
        t = now
        if ok and not self.live:
            t = self._media_time()
            if self.pace:
                self._wait_until_media_time(t)
                now = self.clock()
        image = self.cap.retrieve()[1] if ok and not self._closed.is_set() else None
        if not ok or image is None:
            if self._closed.is_set():
                return None
            if self.live:
                raise self._fail(f"stopped delivering frames after {self.count}", "check the camera / network connection")
            return None  # end of file
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        frame = Frame(np.ascontiguousarray(image[:, :, :3]), t, self.count, now, "BGR")
        self.count += 1
        return frame

    def close(self) -> None:
        super().close()
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class ProtocolError(SourceError):
    """A source that broke its protocol (e.g. an MJPEG part over the size limit): not retried."""


class MjpegHttpSource(Source):
    """An IP camera's MJPEG stream (``multipart/x-mixed-replace`` over HTTP), parsed here so it
    needs nothing but OpenCV's JPEG decoder. A server that is not MJPEG goes to OpenCV.

    Everything the camera sends is bounded: a part's JPEG (``max_part_bytes``, with or without a
    Content-Length), a header line and a part's headers (``max_header_bytes``), and the bytes skipped
    while looking for the next boundary (``max_part_bytes``). A violation is one ``ProtocolError`` line."""

    MAX_PART_BYTES = 16 << 20
    MAX_HEADER_BYTES = 16 << 10

    def __init__(self, uri: str, *, clock: Clock | None = None, timeout_s: float = 10.0,
                 max_part_bytes: int | None = None, max_header_bytes: int | None = None):
        super().__init__(uri, clock=clock)
        self.timeout_s = timeout_s
        self.max_part_bytes = max_part_bytes or self.MAX_PART_BYTES
        self.max_header_bytes = max_header_bytes or self.MAX_HEADER_BYTES
        self._resp = None
        self._boundary = b""
        self._fallback: OpenCVVideoSource | None = None

    def open(self) -> Source:
        import urllib.error
        import urllib.request

        try:
            resp = urllib.request.urlopen(self.uri, timeout=self.timeout_s)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise self._fail(f"cannot connect ({reason})", "check the URL and that the camera is reachable") from None
        ctype = resp.headers.get("Content-Type", "")
        m = re.search(r"boundary=\"?([^\";]+)\"?", ctype)
        if "multipart" not in ctype or not m:
            resp.close()
            self._fallback = OpenCVVideoSource(self.uri, self.uri, live=True, clock=self.clock, timeout_s=self.timeout_s).open()
            return self
        b = m.group(1).encode()
        self._boundary = b if b.startswith(b"--") else b"--" + b
        self._resp = resp
        return self

    def _violation(self, what: str) -> ProtocolError:
        return ProtocolError(f"video source {self.uri!r}: {what} after {self.count} frames; "
                             "is this an MJPEG camera? (the limits: max_part_bytes / max_header_bytes)")

    def _readline(self, limit: int) -> bytes:
        line = self._resp.readline(limit + 1)
        if not line:
            raise EOFError
        if len(line) > limit:
            raise self._violation(f"a line longer than {limit} bytes")
        return line

    def read(self) -> Optional[Frame]:
        if self._fallback is not None:
            frame = self._fallback.read()
            self.count = self._fallback.count
            return frame
        if self._resp is None:
            raise self._fail("read before open")
        if self._closed.is_set():
            return None
        cv2 = _cv2()
        try:
            # Skip to the next boundary (bounded), read the part headers (bounded), then the JPEG (bounded).
            skipped = 0
            while True:
                line = self._readline(self.max_header_bytes)
                skipped += len(line)
                line = line.strip()
                if line.startswith(self._boundary):
                    if line.endswith(b"--") and line != self._boundary:
                        raise EOFError
                    break
                if skipped > self.max_part_bytes:
                    raise self._violation(f"no part boundary in {skipped} bytes")
            length, header_bytes = None, 0
            while True:
                line = self._readline(self.max_header_bytes)
                header_bytes += len(line)
                if header_bytes > self.max_header_bytes:
                    raise self._violation(f"part headers longer than {self.max_header_bytes} bytes")
                line = line.strip()
                if not line:
                    break
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    try:
                        length = int(v.strip())
                    except ValueError:
                        raise self._violation(f"Content-Length {v.strip()[:32]!r} is not a number") from None
                    if length < 0 or length > self.max_part_bytes:
                        raise self._violation(f"a part of {length} bytes (limit {self.max_part_bytes})")
            if length is not None:
                data = self._resp.read(length)
                if len(data) < length:
                    raise EOFError
            else:  # no length: read up to the JPEG end marker, within the limit
                chunks = bytearray()
                while not chunks.endswith(b"\xff\xd9"):
                    part = self._resp.read(1)
                    if not part:
                        raise EOFError
                    chunks += part
                    if len(chunks) > self.max_part_bytes:
                        raise self._violation(f"a part without Content-Length over {self.max_part_bytes} bytes")
                data = bytes(chunks)
        except ProtocolError:
            raise
        except (EOFError, OSError, ValueError, AttributeError) as exc:  # AttributeError: closed under us
            if self._closed.is_set():
                return None
            why = "closed the connection" if isinstance(exc, EOFError) else f"failed ({type(exc).__name__}: {exc})"
            raise self._fail(f"the camera {why} after {self.count} frames", "check the camera / network connection") from None
        now = self.clock()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise self._fail(f"frame {self.count} is not a decodable JPEG", "is this an MJPEG stream?")
        frame = Frame(image, now, self.count, now, "BGR")
        self.count += 1
        return frame

    def interrupt(self) -> None:
        """Shut the socket down (no release): a read blocked in another thread returns at once."""
        super().interrupt()
        import socket

        sock = getattr(getattr(getattr(self._resp, "fp", None), "raw", None), "_sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._fallback is not None:
            self._fallback.interrupt()

    def close(self) -> None:
        super().close()
        if self._resp is not None:
            try:
                self._resp.close()
            except OSError:
                pass
            self._resp = None
        if self._fallback is not None:
            self._fallback.close()


class ReconnectingSource(Source):
    """A network camera that may drop: when a read fails (the connection closed, timed out, refused),
    reconnect with exponential back-off (``backoff_s`` doubling up to ``backoff_max_s``) and go on.
    The first frame after a reconnect carries the flag ``video_reconnected`` and its ``gap_s``;
    ``stats()`` counts attempts, reconnects and gaps. ``give_up_s``: end with the last error after
    this long without a frame (None: keep trying). A protocol violation is not retried."""

    RECONNECTED = "video_reconnected"

    def __init__(self, uri: str, factory: Callable[[], Source], *, clock: Clock | None = None,
                 backoff_s: float = 0.25, backoff_max_s: float = 5.0, give_up_s: float | None = None):
        super().__init__(uri, clock=clock)
        self._factory = factory
        self._inner: Source | None = None
        self._lock = threading.Lock()
        self.backoff_s, self.backoff_max_s, self.give_up_s = backoff_s, backoff_max_s, give_up_s
        self.attempts = 0  # connection attempts after a drop
        self.reconnects = 0  # successful ones
        self.drops = 0
        self.gaps_s: list[float] = []
        self.last_error: str | None = None
        self._last_frame_t: float | None = None

    @property
    def inner(self) -> Source | None:
        return self._inner

    def open(self) -> "ReconnectingSource":
        self._inner = self._factory()  # the first connection fails as the user's one-line error
        return self

    def _drop(self, why: str) -> None:
        self.drops += 1
        self.last_error = why
        with self._lock:
            inner, self._inner = self._inner, None
        if inner is not None:
            try:
                inner.close()  # this thread is the only reader: nobody else is inside it
            except Exception:  # noqa: BLE001
                pass

    def _reconnect(self) -> bool:
        delay = self.backoff_s
        t_drop = self.clock()
        while not self._closed.is_set():
            if self.give_up_s is not None and self.clock() - t_drop > self.give_up_s:
                raise SourceError(f"video source {self.uri!r}: no frames for {self.give_up_s:g} s after "
                                  f"{self.attempts} reconnect attempts; last error: {self.last_error}")
            if self._closed.wait(delay):
                return False
            self.attempts += 1
            try:
                inner = self._factory()
            except SourceError as exc:
                self.last_error = str(exc)
                delay = min(self.backoff_max_s, delay * 2)
                continue
            with self._lock:
                if self._closed.is_set():
                    inner.close()
                    return False
                self._inner = inner
            self.reconnects += 1
            return True
        return False

    def read(self) -> Optional[Frame]:
        gap_pending = False
        while not self._closed.is_set():
            if self._inner is None and not self._reconnect():
                return None
            try:
                frame = self._inner.read()
            except ProtocolError:
                raise
            except SourceError as exc:
                self._drop(str(exc))
                gap_pending = True
                continue
            if frame is None:
                if self._closed.is_set():
                    return None
                self._drop("the stream ended")
                gap_pending = True
                continue
            frame.index = self.count
            if gap_pending and self._last_frame_t is not None:
                frame.gap_s = max(0.0, frame.t - self._last_frame_t)
                frame.flags = frame.flags + (self.RECONNECTED,)
                self.gaps_s.append(frame.gap_s)
                del self.gaps_s[:-1000]
            self._last_frame_t = frame.t
            self.count += 1
            return frame
        return None

    def interrupt(self) -> None:
        super().interrupt()
        with self._lock:
            inner = self._inner
        if inner is not None:
            inner.interrupt()

    def close(self) -> None:
        super().close()
        with self._lock:
            inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()

    def stats(self) -> dict:
        g = self.gaps_s
        return {"items": self.count, "drops": self.drops, "reconnect_attempts": self.attempts, "reconnects": self.reconnects,
                "gaps": len(g), "gap_s_max": round(max(g), 3) if g else None, "gap_s_total": round(sum(g), 3),
                "last_error": self.last_error}


class SyntheticVideoSource(Source):
    """Generated frames: a moving bar over a gradient with the frame index encoded in pixel values.
    ``live=1``: paced at ``fps`` and stamped on the clock like a camera; else a file of ``frames``."""

    def __init__(self, uri: str, *, fps: float = 30.0, size: tuple[int, int] = (480, 640), frames: int | None = 300,
                 live: bool = False, clock: Clock | None = None, pace: bool = False, fail_after: int | None = None):
        self.live = live
        super().__init__(uri, clock=clock, pace=pace)
        if fps <= 0:
            raise self._fail(f"fps must be positive, got {fps}")
        self.fps, self.size, self.frames, self.fail_after = fps, size, frames, fail_after
        h, w = size
        base = (np.linspace(0, 200, w, dtype=np.float32)[None, :, None] + np.linspace(0, 55, h, dtype=np.float32)[:, None, None])
        self._base = np.repeat(base, 3, axis=2).astype(np.uint8)
        self._next_t: float | None = None

    def read(self) -> Optional[Frame]:
        if self.frames is not None and self.count >= self.frames:
            return None
        if self.fail_after is not None and self.count >= self.fail_after:
            raise self._fail(f"synthetic failure after {self.count} frames (fail_after={self.fail_after})")
        if self.live:
            now = self.clock()
            if self._next_t is None:
                self._next_t = now
            delay = self._next_t - now
            if delay > 0:
                self._closed.wait(delay)
            self._next_t += 1.0 / self.fps
        else:
            self._wait_until_media_time(self.count / self.fps)
        if self._closed.is_set():
            return None
        img = self._base.copy()
        h, w = self.size
        x = int(self.count * 7) % max(1, w - 8)
        img[:, x:x + 8] = 255
        img[0, 0] = (self.count & 0xFF, (self.count >> 8) & 0xFF, (self.count >> 16) & 0xFF)
        now = self.clock()
        t = now if self.live else self.count / self.fps
        frame = Frame(img, t, self.count, now, "RGB")
        self.count += 1
        return frame


# ----------------------------------------------------------------------------------------- audio

class SoundFileSource(Source):
    """wav / flac / ogg through soundfile; mixed down to mono float32; blocks of ``block`` samples."""

    kind = "audio"
    live = False

    def __init__(self, uri: str, path: str, *, block: int | None = None, clock: Clock | None = None, pace: bool = False):
        super().__init__(uri, clock=clock, pace=pace)
        self.path = path
        self.block = block
        self.rate = 0
        self._f = None
        self._pos = 0

    def open(self) -> "SoundFileSource":
        if not Path(self.path).is_file():
            raise self._fail("no such audio file", "check the path")
        import soundfile as sf

        try:
            self._f = sf.SoundFile(self.path)
        except (RuntimeError, sf.LibsndfileError if hasattr(sf, "LibsndfileError") else RuntimeError) as exc:
            raise self._fail(f"cannot decode ({exc})", "use a wav/flac/ogg file") from None
        self.rate = int(self._f.samplerate)
        self.block = self.block or max(1, self.rate // 50)  # 20 ms
        return self

    def read(self) -> Optional[AudioBlock]:
        if self._f is None:
            raise self._fail("read before open")
        t = self._pos / self.rate
        self._wait_until_media_time(t + self.block / self.rate)  # a block exists once its last sample was "recorded"
        if self._closed.is_set():
            return None
        data = self._f.read(self.block, dtype="float32", always_2d=True)
        if len(data) == 0:
            return None
        mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
        self._pos += len(mono)
        self.count += 1
        return AudioBlock(np.ascontiguousarray(mono, dtype=np.float32), t, self.rate, self.clock())

    def close(self) -> None:
        super().close()
        if self._f is not None:
            self._f.close()
            self._f = None


class MicSource(Source):
    """A microphone through PortAudio (sounddevice); blocks are stamped with PortAudio's ADC time
    mapped onto the monotonic clock."""

    kind = "audio"
    live = True

    def __init__(self, uri: str, device, *, rate: int | None = None, block: int | None = None, clock: Clock | None = None):
        super().__init__(uri, clock=clock)
        self.device = device
        self.rate = rate or 0
        self.block = block
        self._q: queue.Queue = queue.Queue(maxsize=500)
        self._stream = None
        self._offset: float | None = None
        self.overflows = 0

    def open(self) -> "MicSource":
        try:
            import sounddevice as sd
        except OSError as exc:  # the wheel is there, libportaudio is not
            raise self._fail(f"PortAudio is not available ({exc})",
                             "install it with: apt-get install libportaudio2 (Debian/Ubuntu) or brew install portaudio") from None
        except ImportError:
            raise self._fail("the sounddevice package is not installed", "install it with: pip install sounddevice") from None
        try:
            info = sd.query_devices(self.device, "input")
            rate = self.rate or int(info["default_samplerate"])
            self.block = self.block or max(1, rate // 100)
            self._stream = sd.InputStream(device=self.device, channels=1, samplerate=rate, blocksize=self.block,
                                          dtype="float32", callback=self._callback)
            self._stream.start()
        except (ValueError, sd.PortAudioError) as exc:
            raise self._fail(f"cannot open the microphone ({exc})",
                             "list input devices with: python -m sounddevice") from None
        self.rate = rate
        return self

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread
        now = self.clock()
        if status and status.input_overflow:
            self.overflows += 1
        adc = getattr(time_info, "inputBufferAdcTime", 0.0) or 0.0
        cur = getattr(time_info, "currentTime", 0.0) or 0.0
        t = now - (cur - adc) if adc and cur else now - frames / float(self.rate or 1)
        try:
            self._q.put_nowait(AudioBlock(indata[:, 0].copy(), t, self.rate, now))
        except queue.Full:
            self.overflows += 1

    def read(self) -> Optional[AudioBlock]:
        while not self._closed.is_set():
            try:
                block = self._q.get(timeout=0.1)
            except queue.Empty:
                if self._stream is not None and not self._stream.active:
                    raise self._fail(f"the input stream stopped after {self.count} blocks ({self.overflows} overflows; "
                                     "was the device unplugged?)", "check the audio device (python -m sounddevice)")
                continue
            self.count += 1
            return block
        return None

    def stats(self) -> dict:
        return {"items": self.count, "overflows": self.overflows, "queued": self._q.qsize()}

    def close(self) -> None:
        super().close()
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            except Exception:  # noqa: BLE001 - closing a broken device must not mask the original error
                pass
            self._stream = None


class SyntheticAudioSource(Source):
    """A sine tone (``freq``) plus a little noise. ``live=1``: blocks released in real time and
    stamped on the clock like a microphone; else a file of ``seconds``. Fault injection (live):
    ``silent_every=S&silent_s=G``: every S seconds the source delivers nothing for G seconds (those
    samples are lost, like a USB microphone that hiccups); ``fail_after=N`` blocks: it fails."""

    kind = "audio"

    def __init__(self, uri: str, *, rate: int = 16000, freq: float = 440.0, seconds: float | None = 10.0,
                 block: int | None = None, live: bool = False, clock: Clock | None = None, pace: bool = False,
                 fail_after: int | None = None, silent_every: float | None = None, silent_s: float = 0.0):
        self.live = live
        super().__init__(uri, clock=clock, pace=pace)
        if rate <= 0:
            raise self._fail(f"rate must be positive, got {rate}")
        self.rate, self.freq, self.seconds = int(rate), float(freq), seconds
        self.block = block or max(1, self.rate // 100)
        self.fail_after = fail_after
        self.silent_every, self.silent_s = silent_every, silent_s
        self.silences = 0
        self._pos = 0
        self._t0: float | None = None
        self._rng = np.random.default_rng(0)

    def read(self) -> Optional[AudioBlock]:
        total = None if self.seconds is None else int(round(self.seconds * self.rate))
        if total is not None and self._pos >= total:
            return None
        if self.fail_after is not None and self.count >= self.fail_after:
            raise self._fail(f"synthetic failure after {self.count} blocks (fail_after={self.fail_after})")
        n = self.block if total is None else min(self.block, total - self._pos)
        if self.live:
            if self._t0 is None:
                self._t0 = self.clock()
            delay = self._t0 + (self._pos + n) / self.rate - self.clock()
            if delay > 0:
                self._closed.wait(delay)
            if self.silent_every and self.silent_s > 0 and self._pos > 0:
                period = int(self.silent_every * self.rate)
                if (self._pos + n) // period > self._pos // period:  # a silence starts: deliver nothing for silent_s
                    self.silences += 1
                    self._closed.wait(self.silent_s)
                    self._pos += int(self.silent_s * self.rate)  # lost samples: the clock went on
        else:
            self._wait_until_media_time((self._pos + n) / self.rate)
        if self._closed.is_set():
            return None
        k = np.arange(self._pos, self._pos + n)
        x = (0.3 * np.sin(2 * np.pi * self.freq * k / self.rate) + 0.01 * self._rng.standard_normal(n)).astype(np.float32)
        t = self._t0 + self._pos / self.rate if self.live else self._pos / self.rate
        self._pos += n
        self.count += 1
        return AudioBlock(x, t, self.rate, self.clock())


# ----------------------------------------------------------------------------------------- URIs

def _query(uri: str) -> tuple[str, dict[str, str]]:
    parsed = urlparse(uri)
    return parsed.path, {k: v[-1] for k, v in parse_qs(parsed.query).items()}


def _flag(q: dict[str, str], key: str, default: bool = False) -> bool:
    return q.get(key, "1" if default else "0").lower() in ("1", "true", "yes", "on")


def _num(q: dict, key: str, default, cast, uri: str):
    try:
        return cast(q[key]) if key in q else default
    except ValueError:
        raise SourceError(f"source {uri!r}: {key}={q[key]!r} is not a number") from None


def open_video(uri: str, *, clock: Clock | None = None, pace: bool = False, timeout_s: float = 10.0,
               reconnect: bool = True, give_up_s: float | None = None, max_part_bytes: int | None = None) -> Source:
    """Open a video source by URI (see the module docstring); a failure is a one-line SourceError.
    Network cameras (http(s) MJPEG, rtsp, ...) reconnect with back-off after a drop unless
    ``reconnect=False`` (then a drop ends the stream with one line); ``timeout_s`` bounds every
    connect and read."""
    uri = str(uri)
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https") or scheme in _NETWORK:
        if scheme in ("http", "https"):
            factory = lambda: MjpegHttpSource(uri, clock=clock, timeout_s=timeout_s,  # noqa: E731
                                              max_part_bytes=max_part_bytes).open()
        else:
            factory = lambda: OpenCVVideoSource(uri, uri, live=True, clock=clock, timeout_s=timeout_s).open()  # noqa: E731
        if not reconnect:
            return factory()
        return ReconnectingSource(uri, factory, clock=clock, give_up_s=give_up_s).open()
    return _open_video(uri, clock=clock, pace=pace, timeout_s=timeout_s)


_NETWORK = ("rtsp", "rtsps", "rtmp", "udp", "tcp", "srt")


def _open_video(uri: str, *, clock: Clock | None = None, pace: bool = False, timeout_s: float = 10.0) -> Source:
    """Cameras, synthetic streams and files."""
    if uri.startswith("camera:") or re.fullmatch(r"/dev/video\d+", uri):
        tail = uri.split(":", 1)[1] if uri.startswith("camera:") else uri
        if uri.startswith("camera:") and not re.fullmatch(r"\d*", tail):
            raise SourceError(f"video source {uri!r}: camera index must be a number, like camera:0")
        target = int(tail or 0) if uri.startswith("camera:") else uri
        return OpenCVVideoSource(uri, target, live=True, clock=clock, timeout_s=timeout_s).open()
    scheme = urlparse(uri).scheme.lower()  # network schemes are handled by open_video
    if scheme == "synthetic":
        path, q = _query(uri)
        if path not in ("", "video"):
            raise SourceError(f"video source {uri!r}: use synthetic:video?fps=30&size=640x480&frames=300&live=0")
        size = q.get("size", "640x480")
        m = re.fullmatch(r"(\d+)x(\d+)", size)
        if not m:
            raise SourceError(f"video source {uri!r}: size must be WIDTHxHEIGHT, like 640x480")
        frames = _num(q, "frames", 300, int, uri)
        return SyntheticVideoSource(uri, fps=_num(q, "fps", 30.0, float, uri), size=(int(m.group(2)), int(m.group(1))),
                                    frames=None if frames <= 0 else frames, live=_flag(q, "live"), clock=clock, pace=pace,
                                    fail_after=_num(q, "fail_after", None, int, uri)).open()
    if scheme == "file":
        path = urlparse(uri).path
    elif scheme and len(scheme) > 1:
        raise SourceError(f"video source {uri!r}: unknown scheme {scheme!r}; use {VIDEO_URI_HELP}")
    else:
        path = uri
    return OpenCVVideoSource(uri, os.fspath(path), live=False, clock=clock, pace=pace).open()


def open_audio(uri: str, *, clock: Clock | None = None, pace: bool = False, block: int | None = None) -> Source:
    """Open an audio source by URI (see the module docstring); a failure is a one-line SourceError."""
    uri = str(uri)
    if uri.startswith("mic:") or uri == "mic":
        tail = uri.split(":", 1)[1] if ":" in uri else "default"
        device = None if tail in ("", "default") else int(tail) if tail.isdigit() else tail
        return MicSource(uri, device, block=block, clock=clock).open()
    scheme = urlparse(uri).scheme.lower()
    if scheme == "synthetic":
        path, q = _query(uri)
        if path not in ("", "audio"):
            raise SourceError(f"audio source {uri!r}: use synthetic:audio?rate=16000&freq=440&seconds=10&live=0")
        seconds = _num(q, "seconds", 10.0, float, uri)
        return SyntheticAudioSource(uri, rate=_num(q, "rate", 16000, int, uri), freq=_num(q, "freq", 440.0, float, uri),
                                    seconds=None if seconds <= 0 else seconds, block=_num(q, "block", block, int, uri),
                                    live=_flag(q, "live"), clock=clock, pace=pace,
                                    fail_after=_num(q, "fail_after", None, int, uri),
                                    silent_every=_num(q, "silent_every", None, float, uri),
                                    silent_s=_num(q, "silent_s", 0.0, float, uri)).open()
    if scheme == "file":
        path = urlparse(uri).path
    elif scheme and len(scheme) > 1:
        raise SourceError(f"audio source {uri!r}: unknown scheme {scheme!r}; use {AUDIO_URI_HELP}")
    else:
        path = uri
    return SoundFileSource(uri, os.fspath(path), block=block, clock=clock, pace=pace).open()
