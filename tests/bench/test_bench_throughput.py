"""edgemm bench --modes throughput: N threads share one runtime (thread-safe by contract); calls/s and per-call
latency per stream count, for every deployed artifact, in the same JSON as the other modes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgemm.cli import main

FORMAT1 = Path(__file__).parents[1] / "data" / "format1_tiny"


def test_throughput_rows_per_stream_count(tmp_path, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(FORMAT1, bundle)
    out = tmp_path / "r.json"
    assert main(["bench", str(bundle), "--modes", "throughput", "--streams", "1,3", "--seconds", "0.3", "--rounds", "1",
                 "--backends", "onnxruntime,openvino", "--precisions", "fp32", "--json", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert {(r["backend"], r["streams"]) for r in runs} == {(b, n) for b in ("onnxruntime", "openvino") for n in (1, 3)}
    for r in runs:
        assert r["mode"] == "throughput" and r["batch"] == 1 and not r["baseline"]
        assert r["throughput"] > 0 and r["iterations"] > 0 and r["p50_ms"] <= r["p99_ms"]
    assert "throughput x3" in capsys.readouterr().out
