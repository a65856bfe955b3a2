"""Reading IMU samples: CSV lines ``[t,]ax,ay,az,gx,gy,gz`` (a header line optional) and ``imu-csv:`` /
``imu-serial:`` URIs. Every malformed input is one ``ImuFormatError`` line naming the line and the fix."""
from __future__ import annotations

import math
from typing import Iterable
from urllib.parse import parse_qs

import numpy as np

from edgemm.errors import EdgemmError

CHANNELS = ("ax", "ay", "az", "gx", "gy", "gz")
SCHEMES = ("imu-csv", "imu-serial")


class ImuFormatError(EdgemmError):
    """IMU data or a URI that cannot be read."""


def parse_imu_line(line: str, where: str = "") -> list[float]:
    """One data line -> its floats (6, or 7 with a leading time)."""
    parts = [p.strip() for p in line.strip().split(",")]
    if len(parts) not in (6, 7):
        raise ImuFormatError(f"{where}expected 6 values (ax,ay,az,gx,gy,gz) or 7 (t first), got {len(parts)}: {line.strip()[:80]!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ImuFormatError(f"{where}not a number in {line.strip()[:80]!r}; IMU lines hold numbers only") from None
    if not all(math.isfinite(v) for v in values):
        raise ImuFormatError(f"{where}non-finite value in {line.strip()[:80]!r}")
    return values


def parse_imu_lines(lines: Iterable[str], name: str = "IMU data") -> tuple[np.ndarray | None, np.ndarray]:
    """CSV lines -> ``(times [n] seconds or None, samples [n, 6] float32)``. A first line of column names is a
    header (``t,ax,...`` says the first column is time); blank lines and ``#`` comments are skipped."""
    times, rows, width = [], [], None
    for i, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if width is None and not rows and any(c.isalpha() for c in line.replace("e", "").replace("E", "")):
            cols = [c.strip().lower() for c in line.split(",")]
            if cols[-6:] != list(CHANNELS) or len(cols) not in (6, 7):
                raise ImuFormatError(f"{name} line {i}: header {line.strip()[:80]!r} must be ax,ay,az,gx,gy,gz (t first optional)")
            width = len(cols)
            continue
        values = parse_imu_line(line, f"{name} line {i}: ")
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise ImuFormatError(f"{name} line {i}: {len(values)} values where the lines above have {width}")
        if width == 7:
            if times and values[0] <= times[-1]:
                raise ImuFormatError(f"{name} line {i}: time {values[0]} does not increase (previous {times[-1]})")
            times.append(values[0])
        rows.append(values[-6:])
    if not rows:
        raise ImuFormatError(f"{name} holds no samples; write one ax,ay,az,gx,gy,gz line per sample")
    samples = np.asarray(rows, np.float32)
    return (np.asarray(times, np.float64) if width == 7 else None), samples


def parse_imu_uri(uri: str) -> tuple[str, str, dict[str, float]]:
    """``imu-csv:PATH?rate=200&hop=0.1`` -> ``(scheme, path, {rate, hop})``."""
    if not isinstance(uri, str) or ":" not in uri:
        raise ImuFormatError(f"IMU source {uri!r} is not a URI; use imu-csv:FILE.csv or imu-serial:DEVICE?rate=200")
    scheme, rest = uri.split(":", 1)
    if scheme not in SCHEMES:
        raise ImuFormatError(f"IMU source scheme {scheme!r} is unknown; use {' or '.join(SCHEMES)}")
    path, _, query = rest.partition("?")
    if not path:
        raise ImuFormatError(f"IMU source {uri!r} names no file or device; e.g. {scheme}:walk.csv")
    opts: dict[str, float] = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in ("rate", "hop"):
            raise ImuFormatError(f"IMU source {uri!r}: unknown option {key!r}; options: rate (Hz), hop (seconds)")
        try:
            v = float(values[-1])
        except ValueError:
            raise ImuFormatError(f"IMU source {uri!r}: {key} must be a number, not {values[-1]!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise ImuFormatError(f"IMU source {uri!r}: {key} must be positive, not {values[-1]!r}")
        opts[key] = v
    return scheme, path, opts


def to_uniform(times: np.ndarray | None, samples: np.ndarray, rate: float, source_rate: float | None) -> np.ndarray:
    """Samples on the grid ``k / rate`` from their time stamps (linear interpolation), or from ``source_rate``."""
    if times is None:
        if source_rate is None:
            raise ImuFormatError("IMU samples without a time column need their rate: add ?rate=HZ to the URI or a t column")
        times = np.arange(len(samples)) / float(source_rate)
    if len(samples) == 1:
        return samples.copy()
    grid = np.arange(times[0], times[-1] + 1e-9, 1.0 / rate)
    return np.stack([np.interp(grid, times, samples[:, c]) for c in range(samples.shape[1])], axis=1).astype(np.float32)
