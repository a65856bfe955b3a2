"""``edgemm matrix`` without Ray: a 2 targets x 2 precisions plan of the tiny model runs here, one cell after
another (real exports, verification and benchmarks, brief timing); one report (JSON rows with the contract's
keys, markdown, a plot); a rerun skips the finished cells, a cell whose row is missing is measured again
without rebuilding its bundle; a cell that fails is a row with its one-line error and exit 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgemm.bundle import Bundle
from edgemm.matrix import KEYS, run_matrix

from matrix_tiny import write_plan
from models.paths import ROOT

TESTS = ROOT / "tests"


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "edgemm", "matrix", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module", autouse=True)
def factory_importable():
    """Timing workers (child processes) import the recipe's factory models.tiny:TinyAV from tests/."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]))
        yield


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matrix")
    plan = write_plan(folder)
    report = run_matrix(plan, json_path=folder / "rows.json")
    return folder, plan, report


def test_every_cell_is_a_row_with_the_contract_keys(ran):
    folder, _, report = ran
    rows = report["rows"]
    assert [(r["target"], r["precision"]) for r in rows] == [("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                                                             ("openvino", "fp32"), ("openvino", "int8")]
    for r in rows:
        assert set(KEYS) <= set(r), r
        assert r["model"] == "tiny" and r["device_kind"] == "any" and r["status"] == "ok", r.get("error")
        assert r["p50_ms"] > 0 and 0.0 <= r["top1"] <= 1.0 and r["head"] == "cls"
        b = Bundle.open(folder / "out" / r["bundle"])  # gathered, complete, hashes checked
        assert {a.precision for a in b.artifacts if a.backend == r["target"]} >= {r["precision"]}
    assert report["summary"] == {"cells": 4, "ran": 4, "skipped": 0, "status": {"ok": 4}}
    on_disk = json.loads((folder / "rows.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(rows))
    for ext in ("json", "md", "svg"):
        assert (folder / "out" / f"matrix.{ext}").stat().st_size > 0
    assert "| tiny | openvino | int8 | any | ok |" in (folder / "out" / "matrix.md").read_text()


def test_a_rerun_skips_the_finished_cells(ran):
    folder, plan, report = ran
    res = _cli(plan, "--json", folder / "again.json", cwd=folder)
    assert res.returncode == 0, res.stderr[-2000:]
    again = json.loads((folder / "again.json").read_text())
    assert again["summary"]["ran"] == 0 and again["summary"]["skipped"] == 4
    assert [r["p50_ms"] for r in again["rows"]] == [r["p50_ms"] for r in report["rows"]]
    assert "| tiny | onnxruntime | fp32 | any | ok |" in res.stdout


def test_a_missing_row_is_measured_again_without_rebuilding(ran):
    folder, plan, report = ran
    state_path = folder / "out" / "matrix.state.json"
    state = json.loads(state_path.read_text())
    cell = "tiny/openvino/int8/any"
    del state["cells"][cell]["row"]  # as if its node was lost after the bundle was gathered
    state_path.write_text(json.dumps(state))
    manifest = folder / "out" / "bundles/tiny/openvino-int8-any/manifest.json"
    before = manifest.stat().st_mtime_ns
    again = run_matrix(plan)
    assert again["summary"]["ran"] == 1 and again["summary"]["skipped"] == 3
    assert [r["rerun"] for r in again["rows"]] == [False, False, False, True]
    assert again["rows"][3]["status"] == "ok" and manifest.stat().st_mtime_ns == before  # not rebuilt


def test_a_failing_cell_is_a_row_with_its_error_and_exit_2(tmp_path):
    plan = write_plan(tmp_path, targets=("onnxruntime",), precisions=("fp32",))
    (tmp_path / "tiny.toml").write_text((tmp_path / "tiny.toml").read_text().replace("models.tiny:TinyAV", "models.tiny:RaisingAV"))
    res = _cli(plan, "--json", tmp_path / "rows.json", cwd=tmp_path)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edgemm:")]
    assert res.returncode == 2 and len(lines) == 1 and "1 failed of 1 cells" in lines[0], res.stderr[-2000:]
    row = json.loads((tmp_path / "rows.json").read_text())["rows"][0]
    assert row["status"] == "failed" and row["error"].startswith("export: ") and "boom" in row["error"], row
    assert "\n" not in row["error"] and row["p50_ms"] is None
    state = json.loads((tmp_path / "out" / "matrix.state.json").read_text())
    assert state["cells"]["tiny/onnxruntime/fp32/any"]["row"]["status"] == "failed"  # recorded, and run again next time
