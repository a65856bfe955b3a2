"""The statistics behind speed verdicts (edgemm.bench.stats) on synthetic timings from a seeded RNG:
clearly faster, clearly slower, within noise, a drifting machine, too few rounds, and the false-alarm
rate of the "slower" verdict when nothing differs."""
from __future__ import annotations

import numpy as np
import pytest

from edgemm.bench import stats


def _series(rng, rounds: int, calls: int, scale: float = 1.0, noise: float = 0.05, drift=None) -> list[list[float]]:
    """Call times (ms) in rounds: lognormal noise around ``scale``, times a per-round factor (the machine's drift)."""
    out = []
    for r in range(rounds):
        f = 1.0 if drift is None else drift[r]
        out.append(list(scale * f * np.exp(rng.normal(0.0, noise, calls))))
    return out


def _paired(seed: int, ratio: float, rounds: int = 12, calls: int = 40, noise: float = 0.05, drift_sd: float = 0.0):
    rng = np.random.default_rng(seed)
    drift = np.exp(rng.normal(0.0, drift_sd, rounds)) if drift_sd else None
    return _series(rng, rounds, calls, 1.0, noise, drift), _series(rng, rounds, calls, ratio, noise, drift)


def test_clearly_slower_is_slower_and_the_interval_holds_the_truth():
    a, b = _paired(1, 1.30)
    r = stats.ratio_of_medians(a, b)
    assert r.verdict(0.05) == "slower" and r.low > 1.05
    assert r.low <= 1.30 <= r.high
    assert r.value == pytest.approx(np.median(np.concatenate(b)) / np.median(np.concatenate(a)))
    assert r.stable and r.span() == f"{r.low:.2f}x-{r.high:.2f}x"


def test_clearly_faster_is_faster():
    a, b = _paired(2, 0.70)
    r = stats.ratio_of_medians(a, b)
    assert r.verdict(0.05) == "faster" and r.high < 1.0 and r.low <= 0.70 <= r.high


def test_within_noise_is_same_and_the_interval_straddles_one():
    a, b = _paired(3, 1.0, noise=0.15)
    r = stats.ratio_of_medians(a, b)
    assert r.verdict(0.05) == "same" and r.low < 1.0 < r.high


def test_slower_but_inside_the_tolerance_is_not_slower():
    a, b = _paired(4, 1.03, rounds=30, calls=200, noise=0.02)
    r = stats.ratio_of_medians(a, b)
    assert r.low > 1.0  # measurably slower ...
    assert r.verdict(0.05) == "same"  # ... but not beyond the 5 % the user's int8 is allowed


def test_a_drifting_machine_is_unstable_and_paired_rounds_still_see_the_difference():
    # each round's speed moves by ~25 % for both sides alike (a slow spell hits A and B of a round)
    a, b = _paired(5, 1.25, rounds=12, drift_sd=0.25)
    r = stats.ratio_of_medians(a, b)
    assert not r.a.stable and "round medians spread" in r.a.why_unstable()[0]
    assert r.verdict(0.05) == "slower" and not r.stable and r.span().startswith("~")


def test_unpaired_drift_widens_the_interval():
    rng = np.random.default_rng(6)
    drift_a, drift_b = np.exp(rng.normal(0, 0.3, 10)), np.exp(rng.normal(0, 0.3, 10))
    a, b = _series(rng, 10, 40, 1.0, 0.05, drift_a), _series(rng, 10, 40, 1.0, 0.05, drift_b)
    wide = stats.ratio_of_medians(a, b)
    a2, b2 = _paired(6, 1.0, rounds=10)
    narrow = stats.ratio_of_medians(a2, b2)
    assert wide.high - wide.low > 3 * (narrow.high - narrow.low)
    assert wide.verdict(0.05) == "same"


def test_too_few_rounds_decide_nothing():
    a, b = _paired(7, 2.0, rounds=2)
    r = stats.ratio_of_medians(a, b)
    assert r.verdict(0.05) == "same" and not r.decided(0.05) and not r.stable and r.span().startswith("~")


def test_the_same_samples_give_the_same_interval():
    a, b = _paired(8, 1.1)
    r1, r2 = stats.ratio_of_medians(a, b), stats.ratio_of_medians(a, b)
    assert (r1.low, r1.high) == (r2.low, r2.high)


def test_slower_is_rarely_claimed_when_nothing_differs():
    """With tolerance 0 the "slower" verdict is a one-sided test at 2.5 %: over 60 null experiments it must
    not fire more than a handful of times (the seeded draws make the count fixed)."""
    false = sum(stats.ratio_of_medians(*_paired(100 + k, 1.0, rounds=8, calls=30, drift_sd=0.1)).verdict(0.0) == "slower"
                for k in range(60))
    assert false <= 4, false


def test_tail_makes_a_series_unstable():
    rng = np.random.default_rng(9)
    calls = [list(np.where(rng.random(100) < 0.3, 3.0, 1.0) * np.exp(rng.normal(0, 0.02, 100))) for _ in range(4)]
    s = stats.spread(calls)
    assert s.tail > stats.TAIL_MAX and not s.stable and s.why_unstable()[0].startswith("p90/p50")


def test_marks_and_the_one_warning_line():
    assert stats.mark(1.234, True) == "1.23x" and stats.mark(1.234, False) == "~1.23x" and stats.mark(None, True) == "-"
    steady = stats.spread(_paired(10, 1.0)[0])
    assert stats.unstable_line("bench", [("a", steady)]) is None
    shaky = stats.spread(_paired(11, 1.0, drift_sd=0.3)[0])
    line = stats.unstable_line("bench", [("a", steady), ("b", shaky)], ["load 5.7 on 2 cores"])
    assert "\n" not in line and line.startswith("bench: timings unstable (b: ") and "round medians spread" in line
    assert "load 5.7 on 2 cores" in line and "marked ~" in line


def test_machine_state_reads_load_and_clock():
    st = stats.machine_state()
    assert st["cores"] >= 1 and st["loadavg"] is not None
    assert st["cpu_mhz"] is None or st["cpu_mhz"][0] <= st["cpu_mhz"][1]
    assert stats.state_problems({"loadavg": 8.0, "cores": 2, "load_per_core": 4.0, "cpu_mhz": [1200, 3400]}) == \
        ["load 8.0 on 2 cores", "CPU clock 1200-3400 MHz"]
