"""Timing: run a callable repeatedly and report percentiles (milliseconds)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    iterations: int

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def measure_latency(fn: Callable[[], object], warmup: int = 5, min_time_s: float = 1.0, min_iters: int = 20, max_iters: int = 2000) -> LatencyStats:
    """Call ``fn`` ``warmup`` times, then until ``min_time_s`` and ``min_iters`` are both reached."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < max_iters and (len(times) < min_iters or time.perf_counter() - start < min_time_s):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    a = np.asarray(times)
    return LatencyStats(float(np.percentile(a, 50)), float(np.percentile(a, 90)), float(np.percentile(a, 99)), float(a.mean()), len(a))
