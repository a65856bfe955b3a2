"""A/V alignment: an audio ring buffer on the capture clock, windows that end at a frame's time.

Sample ``k`` of the audio stream was captured at ``t0 + k / rate + offset``: ``t0`` comes from the
first block, ``offset`` follows the live clock (live sources: the difference between each block's
stamp and the time its sample count predicts is smoothed into ``offset``; its slope is the drift
of the audio clock against the capture clock, reported in ppm). File sources have no drift.

``AudioRing.window(t_end, n)`` returns the ``n`` samples that end at ``t_end``: parts before the
start of the audio, overwritten by newer audio, or not captured yet are zero-filled and flagged.
When the newest part is missing the caller decides (``StallPolicy``): wait up to a deadline,
zero-fill with a flag, or skip the frame.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import EdgemmError

STALL_POLICIES = ("wait", "zero", "skip")

# Flags a result can carry (the audio window was not entirely real audio ending at the frame).
BEFORE_START = "audio_before_start"  # the window reaches before the first sample: zero-filled
STALLED = "audio_stalled"  # audio had not reached the frame time in time: newest part zero-filled
ENDED = "audio_ended"  # the audio source ended before the frame time: zero-filled
OVERRUN = "audio_overrun"  # the oldest part was already overwritten in the ring: zero-filled
NO_AUDIO = "audio_missing"  # no audio at all yet


@dataclass
class WindowInfo:
    flags: list[str] = field(default_factory=list)
    lag_s: float = 0.0  # frame time - time just after the newest audio sample (> 0: audio behind)
    skew_s: float = 0.0  # frame time - end time of the audio actually used (0 when aligned)
    waited_s: float = 0.0
    zero_filled: int = 0  # samples
    end: int = 0  # sample index just past the window (may be past the audio captured so far)
    available_end: int = 0  # min(end, samples written when the window was taken)


class AudioRing:
    """Thread-safe ring of mono float32 samples at ``rate`` on the capture clock."""

    def __init__(self, rate: int, capacity_s: float = 4.0, *, live: bool = False, clock: Callable[[], float] | None = None,
                 backpressure: bool = False, tolerance_s: float = 0.0):
        if rate <= 0:
            raise EdgemmError(f"audio rate must be positive, got {rate}")
        self.rate = int(rate)
        self.capacity = max(1, int(round(capacity_s * rate)))
        self.buf = np.zeros(self.capacity, dtype=np.float32)
        self.live = live
        self.clock = clock or time.monotonic
        self.backpressure = backpressure  # files: writers wait instead of overwriting unread audio
        self.tolerance_s = tolerance_s  # audio this close to the frame time counts as aligned
        self.written = 0  # total samples ever written
        self.released = 0  # samples no reader needs any more (backpressure)
        self.t0: float | None = None
        self.offset = 0.0
        self.ended = False
        self.closed = False
        self.discontinuities = 0
        self._drift: deque[tuple[float, float]] = deque(maxlen=512)
        self.cond = threading.Condition()

    # ------------------------------------------------------------------ clock mapping
    def time_of(self, k: float) -> float:
        """Capture time of sample index ``k`` (``k`` may be fractional or past the end)."""
        return (self.t0 or 0.0) + k / self.rate + self.offset

    def index_at(self, t: float) -> int:
        """Index of the first sample captured at or after ``t``: a window ending at ``t`` is ``[.., index)``."""
        return int(round((t - (self.t0 or 0.0) - self.offset) * self.rate))

    def end_time(self) -> float:
        return self.time_of(self.written)

    def drift_ppm(self) -> float:
        """Slope of (block stamp - predicted stamp) against time, in parts per million."""
        with self.cond:
            pts = list(self._drift)
        if len(pts) < 8 or pts[-1][0] - pts[0][0] < 1.0:
            return 0.0
        t = np.array([p[0] for p in pts])
        e = np.array([p[1] for p in pts])
        t = t - t.mean()
        return float((t * (e - e.mean())).sum() / (t * t).sum() * 1e6)

    # ------------------------------------------------------------------ writer side
    def write(self, samples: np.ndarray, t: float) -> None:
        """Append consecutive samples whose first one was captured at ``t``."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        n = len(x)
        if n == 0:
            return
        with self.cond:
            if self.backpressure:
                while not self.closed and self.written + n - self.released > self.capacity:
                    self.cond.wait(0.1)
                if self.closed:
                    return
            if self.t0 is None:
                self.t0 = t - self.written / self.rate
            elif self.live:
                err = t - self.time_of(self.written)
                if abs(err) > 0.25:  # lost samples / clock jump: re-anchor, count it
                    self.offset += err
                    self.discontinuities += 1
                    self._drift.clear()
                else:
                    self._drift.append((t, err + self.offset))
                    self.offset += 0.05 * err
            if n >= self.capacity:
                x = x[-self.capacity:]
                self.written += n - self.capacity
                n = self.capacity
            start = self.written % self.capacity
            first = min(n, self.capacity - start)
            self.buf[start:start + first] = x[:first]
            if first < n:
                self.buf[:n - first] = x[first:]
            self.written += n
            self.cond.notify_all()

    def end(self) -> None:
        """The source ended: readers stop waiting for more audio."""
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def release_before(self, k: int) -> None:
        """Readers no longer need samples before index ``k`` (lets a backpressured writer go on)."""
        with self.cond:
            if k > self.released:
                self.released = min(k, self.written)
                self.cond.notify_all()

    # ------------------------------------------------------------------ reader side
    def ready_for(self, t_end: float) -> bool:
        """True once audio up to ``t_end`` (within the tolerance) is in, or no more will come."""
        with self.cond:
            return self._ready(t_end)

    def _ready(self, t_end: float) -> bool:
        return self.ended or self.closed or (self.t0 is not None and self.end_time() >= t_end - self.tolerance_s - 1e-9)

    def samples(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` by stream index; parts not in the ring (overwritten, before the
        start, not captured yet) are zeros. A streaming frontend reads only what is new with it."""
        out = np.zeros(max(0, stop - start), dtype=np.float32)
        with self.cond:
            self._copy(start, stop, out)
        return out

    def _copy(self, start: int, end: int, out: np.ndarray) -> int:
        lo = max(start, 0, self.written - self.capacity)
        hi = min(end, self.written)
        if hi > lo:
            a, b = lo % self.capacity, (hi - 1) % self.capacity + 1
            dst = out[lo - start:hi - start]
            if a < b:
                dst[:] = self.buf[a:b]
            else:
                k = self.capacity - a
                dst[:k] = self.buf[a:]
                dst[k:] = self.buf[:b]
        return max(0, hi - lo)

    def window(self, t_end: float, n: int, *, wait_s: float | None = 0.0, out: np.ndarray | None = None,
               core: int | None = None, copy: bool = True, keep: int | None = None) -> tuple[np.ndarray | None, WindowInfo]:
        """The ``n`` samples ending at ``t_end``; waits up to ``wait_s`` (None: no limit) for audio
        to reach ``t_end``. Missing parts are zero-filled and named in ``info.flags`` (judged on the
        last ``core`` samples, the model's window, when ``n`` includes a resampling margin).
        ``copy=False``: only wait, locate and flag (``info.end``); no samples are copied (None).
        ``keep``: while waiting, the reader needs nothing older than ``keep`` samples before the
        window's end: a backpressured writer may go on past the ring's capacity (a sparse video, one
        frame every few seconds, waits for more audio than the ring holds; without this the writer
        and the reader would wait on each other)."""
        info = WindowInfo()
        out = (np.zeros(n, dtype=np.float32) if out is None else out) if copy else None
        t_start_wait = self.clock()
        with self.cond:
            if not self._ready(t_end) and wait_s != 0.0:
                deadline = None if wait_s is None else time.monotonic() + wait_s
                while not self._ready(t_end):
                    if keep is not None and self.backpressure:
                        k = min(self.index_at(t_end) - keep, self.written)
                        if k > self.released:
                            self.released = k
                            self.cond.notify_all()
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self.cond.wait(0.1 if remaining is None else min(remaining, 0.1))
            info.waited_s = max(0.0, self.clock() - t_start_wait)
            if self.t0 is None:
                if out is not None:
                    out[:] = 0.0
                info.flags.append(NO_AUDIO)
                info.zero_filled = n
                info.lag_s = float("inf")
                info.skew_s = 0.0
                return out, info
            info.lag_s = t_end - self.end_time()
            end = self.index_at(t_end)
            if end > self.written and info.lag_s <= self.tolerance_s + 1e-9:
                end = self.written  # close enough: use the newest audio, report the skew
            info.skew_s = t_end - self.time_of(end)
            start = end - n
            info.end, info.available_end = end, min(end, self.written)
            if out is not None:
                out[:] = 0.0
                info.zero_filled = n - self._copy(start, end, out)
            else:
                info.zero_filled = n - max(0, min(end, self.written) - max(start, 0, self.written - self.capacity))
            core_start = end - (n if core is None else min(core, n))
            if core_start < 0:
                info.flags.append(BEFORE_START)
            if core_start < self.written - self.capacity and end > 0:
                info.flags.append(OVERRUN)
            if end > self.written:
                info.flags.append(ENDED if self.ended else STALLED)
        return out, info
