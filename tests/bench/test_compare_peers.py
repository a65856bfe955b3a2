"""benchmarks/compare_peers.py: the verdict rule and its one-line refusal of a bad --prune (the measurement itself
is a benchmark, run by hand: benchmarks/results/peers-*.json)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_peers.py"


def _module():
    spec = importlib.util.spec_from_file_location("compare_peers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(name, edgemm, p50, top1):
    return {"name": name, "edgemm": edgemm, "p50_ms": p50, "top1": top1}


def test_verdict_takes_edgemm_fastest_row_within_one_point_and_compares_it_with_every_peer():
    v = _module().verdict
    rows = [_row("torch_eager", False, 6.0, 0.963), _row("ort_qs", False, 1.3, 0.952), _row("skipped", False, None, None),
            _row("edgemm fp32", True, 0.9, 0.963), _row("edgemm int8 lossy", True, 0.5, 0.950)]
    out = v(rows, 0.963)
    assert out["best"] == "edgemm fp32" and out["pass"] and out["measured_peer_rows"] == 2 and not out["enough_peer_rows"]
    assert rows[3]["best"] and "best" not in rows[4]  # 0.950 is more than 1 point below the reference
    assert out["peers"]["ort_qs"] == {"faster": True, "top1_equal_or_better": True, "speedup": 1.444}
    rows = [_row("ort_qs", False, 0.8, 0.963), _row("edgemm fp32", True, 0.9, 0.963)]
    assert not v(rows, 0.963)["pass"]  # a peer at equal top-1 is faster
    assert v([_row("edgemm lossy", True, 0.5, 0.9)], 0.963)["best"] is None


def test_a_bad_prune_ratio_is_one_line_before_any_work(tmp_path):
    p = subprocess.run([sys.executable, str(SCRIPT), "--prune", "1.5", "--cache", str(tmp_path / "c")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "compare_peers: error: --prune 1.5: give a ratio between 0 and 1, e.g. --prune 0.5"]
    assert not (tmp_path / "c").exists()
