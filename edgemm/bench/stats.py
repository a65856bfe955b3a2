"""The statistics behind every speed verdict and every printed latency ratio.

Timings on a shared CPU drift (other processes, frequency changes) by more than the differences
edgemm has to decide on (int8 vs fp32 within a few per cent). So two things are measured in
interleaved rounds (A B, B A, A B, ...: a slow spell hits both sides of a round alike) and
compared as a **ratio of medians with a paired bootstrap interval**: each bootstrap replicate
draws the rounds with replacement (the same rounds for both sides, which keeps the pairing and
carries the round-to-round drift into the interval) and, inside each drawn round, the calls with
replacement (the noise within a round); the interval is the percentile interval of the replicates'
median(B) / median(A). The point value is the median ratio of all samples, so the ratio printed
next to two medians is exactly their quotient. The seed is fixed: the same samples always give
the same interval.

A verdict is made against a tolerance: "slower" only when the whole interval lies above
``1 + tolerance`` (slower, with the stated confidence, by more than the tolerance), "faster" when
it lies below 1, otherwise "same" (the difference is inside the noise or the tolerance), and a
caller keeps what the user asked for.

Stability of one series: its tail (p90 / p50) and the spread of its round medians; with the
machine's load average and CPU clock (from /sys, else /proc/cpuinfo) where readable. A ratio whose
inputs are unstable is printed with a ``~`` in front.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP = 1000  # replicates: enough for a 95 % percentile interval whose ends move by about 1 % between seeds
SEED = 28  # fixed: a verdict must not depend on the luck of the resampling
PER_ROUND = 100  # calls drawn per round and replicate (rounds of thousands of calls are subsampled)
MIN_ROUNDS = 3  # fewer rounds cannot show round-to-round drift: the ratio is marked, the verdict is "same"
TAIL_MAX = 1.5  # p90 / p50 above this: the calls of one series are too spread to trust a small difference
DRIFT_MAX = 0.15  # round medians spread by more than this fraction of their median: the machine drifted
LOAD_MAX = 1.0  # load average per core above this: other work competes for the CPU


@dataclass(frozen=True)
class Spread:
    """How steady one series of interleaved rounds was."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    tail: float  # p90 / p50
    drift: float  # spread of the round medians (max - min, or p90 - p10 from 5 rounds on) over their median
    rounds: int
    samples: int

    @property
    def stable(self) -> bool:
        return self.tail <= TAIL_MAX and self.drift <= DRIFT_MAX

    def why_unstable(self) -> list[str]:
        out = []
        if self.tail > TAIL_MAX:
            out.append(f"p90/p50 {self.tail:.2f}")
        if self.drift > DRIFT_MAX:
            out.append(f"round medians spread {self.drift:.0%}")
        return out

    def to_dict(self) -> dict:
        return {"p50_ms": round(self.p50_ms, 5), "p90_ms": round(self.p90_ms, 5), "p99_ms": round(self.p99_ms, 5),
                "mean_ms": round(self.mean_ms, 5), "tail": round(self.tail, 4), "drift": round(self.drift, 4),
                "rounds": self.rounds, "samples": self.samples, "stable": self.stable}


def _rounds(rounds: Sequence[Sequence[float]]) -> list[np.ndarray]:
    out = [np.asarray(r, dtype=np.float64) for r in rounds if len(r)]
    if not out:
        raise ValueError("no timings to summarize")
    return out


def spread(rounds: Sequence[Sequence[float]]) -> Spread:
    """The stability of one series given as its rounds (each a list of call times in ms)."""
    rs = _rounds(rounds)
    a = np.concatenate(rs)
    p50, p90, p99 = (float(np.percentile(a, q)) for q in (50, 90, 99))
    meds = np.array([np.median(r) for r in rs])
    centre = float(np.median(meds))
    if len(meds) < 2 or centre <= 0:
        drift = 0.0
    elif len(meds) < 5:
        drift = float(meds.max() - meds.min()) / centre
    else:  # the extreme round of many is expected to stray: judge the bulk of them
        drift = float(np.percentile(meds, 90) - np.percentile(meds, 10)) / centre
    return Spread(p50, p90, p99, float(a.mean()), p90 / p50 if p50 > 0 else float("inf"), drift, len(rs), int(a.size))


@dataclass(frozen=True)
class Ratio:
    """median(B) / median(A) of two series measured in the same interleaved rounds, with its interval."""

    value: float
    low: float
    high: float
    confidence: float
    a: Spread
    b: Spread

    @property
    def rounds(self) -> int:
        return min(self.a.rounds, self.b.rounds)

    @property
    def stable(self) -> bool:
        return self.a.stable and self.b.stable and self.rounds >= MIN_ROUNDS

    def verdict(self, tolerance: float = 0.0) -> str:
        """"slower": the whole interval above 1 + tolerance; "faster": below 1; else "same" (inside the noise)."""
        if self.rounds < MIN_ROUNDS:
            return "same"
        if self.low > 1.0 + tolerance:
            return "slower"
        if self.high < 1.0:
            return "faster"
        return "same"

    def decided(self, tolerance: float = 0.0) -> bool:
        """Whether more rounds could still change the answer to "slower by more than the tolerance?"."""
        return self.rounds >= MIN_ROUNDS and (self.low > 1.0 + tolerance or self.high < 1.0 + tolerance)

    def span(self) -> str:
        """``0.98x-1.06x`` (``~`` in front when the inputs were unstable)."""
        return f"{'' if self.stable else '~'}{self.low:.2f}x-{self.high:.2f}x"

    def to_dict(self, tolerance: float | None = None) -> dict:
        out = {"ratio": round(self.value, 4), "low": round(self.low, 4), "high": round(self.high, 4),
               "confidence": self.confidence, "rounds": self.rounds, "stable": self.stable,
               "method": "paired bootstrap over interleaved rounds (rounds, then calls within a round), ratio of medians",
               "a": self.a.to_dict(), "b": self.b.to_dict()}
        if tolerance is not None:
            out.update(tolerance=tolerance, verdict=self.verdict(tolerance))
        return out


def ratio_of_medians(a_rounds: Sequence[Sequence[float]], b_rounds: Sequence[Sequence[float]], *,
                     confidence: float = CONFIDENCE, replicates: int = BOOTSTRAP, seed: int = SEED) -> Ratio:
    """median(B) / median(A) and its ``confidence`` interval; round ``i`` of A and round ``i`` of B were measured
    side by side (interleaved), so the bootstrap draws them together."""
    ra, rb = _rounds(a_rounds), _rounds(b_rounds)
    if len(ra) != len(rb):
        raise ValueError(f"paired rounds differ in number: {len(ra)} vs {len(rb)}")
    value = float(np.median(np.concatenate(rb)) / np.median(np.concatenate(ra)))
    rng = np.random.default_rng(seed)
    n = len(ra)
    picks = rng.integers(0, n, size=(replicates, n))  # the same rounds for both sides: the pairing

    def medians(rounds: list[np.ndarray]) -> np.ndarray:
        flat = np.concatenate(rounds)
        sizes = np.array([len(r) for r in rounds])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        m = int(min(PER_ROUND, sizes.max()))
        u = rng.random((replicates, n, m))
        idx = starts[picks][..., None] + (u * sizes[picks][..., None]).astype(np.int64)
        return np.median(flat[idx].reshape(replicates, n * m), axis=1)

    boot = medians(rb) / medians(ra)
    alpha = (1.0 - confidence) / 2
    low, high = (float(x) for x in np.quantile(boot, [alpha, 1.0 - alpha]))
    return Ratio(value, min(low, value), max(high, value), confidence, spread(ra), spread(rb))


def verdict_text(r: Ratio, tolerance: float, a_name: str = "fp32", b_name: str = "int8", kept: str = "int8") -> str:
    """The verdict in words, with the interval it rests on: ``int8 0.98x-1.06x of fp32: within noise, keeping int8
    as asked``; ``int8 1.08x-1.15x of fp32: int8 is slower with 95 % confidence, beyond the 5 % tolerance``."""
    head = f"{b_name} {r.span()} of {a_name}"
    v = r.verdict(tolerance)
    if v == "slower":
        return f"{head}: {b_name} is slower with {r.confidence:.0%} confidence, beyond the {tolerance:.0%} tolerance"
    if v == "faster":
        return f"{head}: faster with {r.confidence:.0%} confidence"
    if r.rounds < MIN_ROUNDS:
        why = f"too few rounds ({r.rounds}) to tell"
    elif r.low > 1.0:
        why = f"slower, but not clearly beyond the {tolerance:.0%} tolerance"
    else:
        why = "within noise"
    return f"{head}: {why}, keeping {kept} as asked"


# --------------------------------------------------------------------------- the machine while measuring


def cpu_mhz() -> list[float]:
    """The current clock of every CPU in MHz: cpufreq in /sys where the kernel exposes it, else /proc/cpuinfo."""
    out = []
    for f in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        try:
            out.append(int(f.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    if out:
        return out
    try:
        with open("/proc/cpuinfo") as f:
            return [float(line.split(":", 1)[1]) for line in f if line.startswith("cpu MHz")]
    except (OSError, ValueError):
        return []


def machine_state() -> dict:
    """Load average (1 min) per core and the CPU clock range now: quoted with every measurement."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    mhz = cpu_mhz()
    return {"loadavg": None if load is None else round(load, 2), "cores": cores,
            "load_per_core": None if load is None else round(load / cores, 2),
            "cpu_mhz": [round(min(mhz)), round(max(mhz))] if mhz else None}


def state_problems(before: dict, after: dict | None = None) -> list[str]:
    """What in the machine's state (before / after a measurement) makes its numbers doubtful."""
    out = []
    loads = [s["load_per_core"] for s in (before, after) if s and s.get("load_per_core") is not None]
    if loads and max(loads) > LOAD_MAX:
        s = max((s for s in (before, after) if s and s.get("loadavg") is not None), key=lambda s: s["loadavg"])
        out.append(f"load {s['loadavg']:.1f} on {s['cores']} cores")
    clocks = [c for s in (before, after) if s and s.get("cpu_mhz") for c in s["cpu_mhz"]]
    if clocks and max(clocks) > 1.15 * min(clocks):
        out.append(f"CPU clock {min(clocks):.0f}-{max(clocks):.0f} MHz")
    return out


def unstable_line(what: str, spreads: Sequence[tuple[str, Spread]], problems: Sequence[str] = (),
                  fix: str = "rerun on a quiet machine or with more rounds") -> str | None:
    """One warning line naming what was unstable (None when everything was steady)."""
    parts = [f"{name}: {', '.join(s.why_unstable())}" for name, s in spreads if not s.stable]
    shown = parts[:3] + ([f"{len(parts) - 3} more"] if len(parts) > 3 else [])
    if not shown and not problems:
        return None
    return f"{what}: timings unstable ({'; '.join([*shown, *problems])}); ratios from them are marked ~; {fix}"


def fmt_ms(v: float) -> str:
    """A latency for a sentence: two decimals from 0.1 ms up, two significant digits below (0.017, 0.50, 12.35)."""
    return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"


def mark(ratio: float | None, stable: bool, digits: int = 2) -> str:
    """A ratio for a table: ``1.23x``, ``~1.23x`` when its inputs were unstable, ``-`` when there is none."""
    if ratio is None:
        return "-"
    return f"{'' if stable else '~'}{ratio:.{digits}f}x"
