"""IMU stream sources: a CSV file (media time from its ``t`` column or ``?rate=``) and a serial-like line source
(live: each line one sample, stamped on the stream's clock). Each item is a ``Frame`` whose ``image`` is the
window of ``window_s`` seconds at the model's rate that ends at the item's time, one item per ``hop_s``."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from edgemm.runtime.sources import Frame, Source

from .csvreader import ImuFormatError, parse_imu_line, parse_imu_lines, parse_imu_uri, to_uniform


class ImuWindowSource(Source):
    """Windows over samples already read (a CSV file): item ``k`` ends at ``window_s + k * hop`` seconds."""

    kind = "imu"
    live = False

    def __init__(self, uri: str, samples: np.ndarray, cfg, *, hop_s: float | None = None, clock=None, pace: bool = False):
        super().__init__(uri, clock=clock, pace=pace)
        self.samples, self.cfg = samples, cfg
        self.hop = max(1, int(round((hop_s or cfg.hop_s) * cfg.rate)))
        self.n = cfg.n_samples

    def read(self):
        end = self.n + self.count * self.hop
        if end > len(self.samples) or self._closed.is_set():
            return None
        t = end / self.cfg.rate
        self._wait_until_media_time(t)
        frame = Frame(self.samples[end - self.n:end], t, self.count, self.clock(), "RGB")
        self.count += 1
        return frame


class ImuLineSource(Source):
    """A live serial-like source: ``lines`` yields one ``ax,ay,az,gx,gy,gz`` line per sample at ``rate`` Hz; an item
    every ``hop_s`` with the last ``window_s`` (the first sample repeated until the window is full, flagged)."""

    kind = "imu"
    live = True

    def __init__(self, lines: Iterable[str], cfg, *, rate: float, uri: str = "imu-lines", hop_s: float | None = None, clock=None,
                 closer=None):
        super().__init__(uri, clock=clock)
        self.lines, self.cfg, self.rate, self.closer = iter(lines), cfg, float(rate), closer
        self.hop_src = max(1, int(round((hop_s or cfg.hop_s) * rate)))
        self.keep = int(np.ceil(cfg.window_s * rate)) + 2
        self.buf: list[list[float]] = []
        self.read_lines = 0

    def read(self):
        new = 0
        while new < self.hop_src:
            if self._closed.is_set():
                return None
            try:
                line = next(self.lines)
            except StopIteration:
                return None
            self.read_lines += 1
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            self.buf.append(parse_imu_line(line, f"{self.uri} line {self.read_lines}: ")[-6:])
            new += 1
        del self.buf[:-self.keep]
        window = np.asarray(self.buf, np.float32)
        if self.rate != self.cfg.rate:
            window = to_uniform(None, window, self.cfg.rate, self.rate)
        now = self.clock()
        flags = ("imu_window_padded",) if len(self.buf) < self.cfg.window_s * self.rate else ()
        frame = Frame(window, now, self.count, now, "RGB", flags)
        self.count += 1
        return frame

    def close(self) -> None:
        super().close()
        if self.closer is not None:
            self.closer()


def open_imu(uri: str, cfg, *, clock=None, pace: bool = False) -> Source:
    scheme, path, opts = parse_imu_uri(uri)
    p = Path(path)
    if scheme == "imu-csv":
        if not p.is_file():
            raise ImuFormatError(f"IMU file {path} not found; give a CSV of t,ax,ay,az,gx,gy,gz lines")
        with open(p, encoding="utf-8") as f:
            times, samples = parse_imu_lines(f, str(p))
        uniform = to_uniform(times, samples, cfg.rate, opts.get("rate"))
        return ImuWindowSource(uri, uniform, cfg, hop_s=opts.get("hop"), clock=clock, pace=pace)
    if "rate" not in opts:
        raise ImuFormatError(f"IMU source {uri!r}: a serial line source needs its sample rate: {scheme}:{path}?rate=200")
    try:
        f = open(p, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ImuFormatError(f"IMU device {path} cannot be opened ({exc.strerror}); check the path and its permissions") from exc
    return ImuLineSource(f, cfg, rate=opts["rate"], uri=uri, hop_s=opts.get("hop"), clock=clock, closer=f.close)
