"""Two artifacts on one backend, timed side by side in one process: the measurement behind every
int8-vs-fp32 verdict (the export's speed guard, ``edgemm bench --decide``) and the pruning report.

Both runners stay loaded; rounds alternate short blocks of calls (A B, B A, A B, ...), so a slow
spell of the machine hits both sides of a round alike, and the comparison is the ratio of medians
with a paired bootstrap interval (``edgemm.bench.stats``). Rounds go on until the answer to
"is B slower than A by more than the tolerance?" is clear and both series are steady, or until
the time cap; what the machine was doing (load, CPU clock) is recorded before and after.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from . import stats

MIN_ROUNDS = 8
MAX_ROUNDS = 80
CHECK_REPLICATES = 300  # the cheaper interval that decides whether to go on measuring
BLOCK_S = 0.02  # one block of calls lasts about this long (at least 3 calls, at most 25)


@dataclass
class PairResult:
    """The measurement of B against A: the ratio with its interval and the machine's state around it."""

    ratio: stats.Ratio
    tolerance: float
    seconds: float
    capped: bool  # the time cap ended the rounds before the answer was clear and steady
    state: dict = field(default_factory=dict)  # {"before": machine_state, "after": machine_state}

    @property
    def a_ms(self) -> float:
        return self.ratio.a.p50_ms

    @property
    def b_ms(self) -> float:
        return self.ratio.b.p50_ms

    @property
    def verdict(self) -> str:
        return self.ratio.verdict(self.tolerance)

    @property
    def stable(self) -> bool:
        return self.ratio.stable and not stats.state_problems(self.state.get("before", {}), self.state.get("after"))

    def problems(self) -> list[str]:
        out = [f"{side}: {', '.join(s.why_unstable())}" for side, s in (("fp32", self.ratio.a), ("int8", self.ratio.b))
               if not s.stable]
        if self.ratio.rounds < stats.MIN_ROUNDS:
            out.append(f"only {self.ratio.rounds} round(s)")
        return out + stats.state_problems(self.state.get("before", {}), self.state.get("after"))

    def describe(self, a_name: str = "fp32", b_name: str = "int8") -> str:
        """``int8 0.550 ms vs fp32 0.510 ms (x1.08; 1.02x-1.12x, 95 %, 16 rounds)``."""
        r = self.ratio
        return (f"{b_name} {stats.fmt_ms(self.b_ms)} ms vs {a_name} {stats.fmt_ms(self.a_ms)} ms "
                f"({'' if self.stable else '~'}x{r.value:.2f}; "
                f"{r.span()}, {r.confidence:.0%}, {r.rounds} rounds)")

    def verdict_text(self, a_name: str = "fp32", b_name: str = "int8", kept: str = "int8") -> str:
        """The verdict in words with the interval it rests on (``edgemm.bench.stats.verdict_text``)."""
        return stats.verdict_text(self.ratio, self.tolerance, a_name, b_name, kept)

    def to_dict(self) -> dict:
        return {**self.ratio.to_dict(self.tolerance), "seconds": round(self.seconds, 2), "capped": self.capped,
                "machine": self.state, "problems": self.problems(), "text": self.verdict_text()}


def _block(runner, feeds, iters: int) -> list[float]:
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        runner.infer(feeds, check=False)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def measure_pair(backend: str, spec, a: Path, a_precision: str, b: Path, b_precision: str, feeds, threads: int, *,
                 seconds: float = 15.0, tolerance: float = 0.05, min_rounds: int = MIN_ROUNDS,
                 max_rounds: int = MAX_ROUNDS, warmup: int = 5, a_options: dict | None = None,
                 b_options: dict | None = None) -> PairResult:
    """Time ``b`` against ``a`` (both on ``backend``, ``threads`` intra-op threads, the same ``feeds``) in interleaved
    rounds until the verdict against ``tolerance`` is clear and steady, or ``seconds`` have passed (at least two
    rounds, one in each order, whatever the cap). ``a_options`` / ``b_options``: RunnerOptions fields for each side
    over ``threads`` and its precision (what the export probed and records for it, Backend.probe_runner; another
    thread count)."""
    from ..backends.base import RunnerOptions
    from ..backends.registry import get_backend

    be = get_backend(backend)
    before = stats.machine_state()
    ta: list[list[float]] = []
    tb: list[list[float]] = []
    t0 = time.perf_counter()
    def options(precision: str, extra: dict | None) -> RunnerOptions:
        return RunnerOptions(**{"threads": threads, "precision": precision, **(extra or {})})

    with be.create_runner(a, spec, options(a_precision, a_options)) as ra, be.create_runner(b, spec, options(b_precision, b_options)) as rb:
        for runner in (ra, rb, ra, rb):  # warm both, then size the blocks from a warm call of each
            for _ in range(warmup):
                runner.infer(feeds, check=False)
        one = max(min(_block(ra, feeds, 3)), min(_block(rb, feeds, 3))) / 1e3
        iters = int(max(3, min(25, BLOCK_S / max(one, 1e-6))))
        capped = False
        for r in range(max_rounds):
            if r >= 2 and time.perf_counter() - t0 > seconds:
                capped = True
                break
            if r % 2 == 0:
                xa, xb = _block(ra, feeds, iters), _block(rb, feeds, iters)
            else:
                xb, xa = _block(rb, feeds, iters), _block(ra, feeds, iters)
            ta.append(xa)
            tb.append(xb)
            if r + 1 >= min_rounds and (r + 1 - min_rounds) % 4 == 0:
                ratio = stats.ratio_of_medians(ta, tb, replicates=CHECK_REPLICATES)
                if ratio.decided(tolerance) and ratio.stable:
                    break
    ratio = stats.ratio_of_medians(ta, tb)  # the reported interval: every round, the full replicate count
    capped = capped and not (ratio.decided(tolerance) and ratio.stable)
    return PairResult(ratio, tolerance, time.perf_counter() - t0, capped,
                      {"before": before, "after": stats.machine_state()})
