"""`edgemm bench --modes stream`: the real Stream runtime on a live-paced video + wav (written from the
bundle's evaluation data) at each --stream-fps; the JSON, CSV and markdown carry capture-to-result
percentiles, jitter, drops and A/V skew. No timing claims here (those live in benchmarks/)."""
from __future__ import annotations

import csv
import json

import pytest

from edgemm.cli import main


def test_stream_mode_reports_what_users_feel(avnet_bundle_dir, tmp_path):
    files = {k: tmp_path / f"b.{k}" for k in ("json", "csv", "md")}
    rc = main(["-q", "bench", str(avnet_bundle_dir), "--backends", "onnxruntime", "--precisions", "fp32", "--modes", "stream",
               "--stream-fps", "15,30", "--stream-seconds", "1", "--rounds", "1", "--no-progress",
               "--json", str(files["json"]), "--csv", str(files["csv"]), "--markdown", str(files["md"])])
    assert rc == 0
    runs = json.loads(files["json"].read_text())["runs"]
    assert [(r["mode"], r["fps"]) for r in runs] == [("stream", 15.0), ("stream", 30.0)]
    for r in runs:
        st = r["stream"]
        assert st["frames"] == int(r["fps"])  # one second of video at that rate, every frame captured
        assert st["results"] + st["dropped_frames"] == st["frames"] == r["iterations"] + st["dropped_frames"]
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]  # capture-to-result
        assert st["jitter_ms"] >= 0 and 0 <= st["av_skew_ms"]["p50"] <= st["av_skew_ms"]["p99"]
        assert st["stage_p50_ms"]["infer"] > 0
    with open(files["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["fps"]) for r in rows] == [15.0, 30.0] and rows[0]["jitter_ms"] != ""
    md = files["md"].read_text()
    assert "capture-to-result p50" in md and "| onnx/model.fp32.onnx | onnxruntime | fp32 | 30 |" in md


@pytest.mark.parametrize("flags,match", [
    (["--stream-fps", "0"], "--stream-fps '0': frame rates must be in (0, 240]"),
    (["--stream-fps", "30,x"], "--stream-fps '30,x': give comma-separated frame rates"),
    (["--modes", "live"], "unknown mode 'live'; use model, end_to_end or stream"),
])
def test_bad_stream_flags_are_one_line(avnet_bundle_dir, tmp_path, capsys, flags, match):
    out = tmp_path / "never.json"
    rc = main(["bench", str(avnet_bundle_dir), "--backends", "onnxruntime", "--json", str(out), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and match in err[0]
    assert not out.exists()
