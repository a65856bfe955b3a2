"""`edgemm bench` writers and flags on a real (short) benchmark of the avnet bundle: CSV, markdown and
matplotlib plots agree with the JSON, --fps reaches the end_to_end measurement, stages_ms has the
documented stages, bad flags are one line before anything is measured, and a hung worker is stopped.
No timing claims here (those live in benchmarks/)."""
from __future__ import annotations

import csv
import json

import pytest

from edgemm.bench.report import COLUMNS, write_plot
from edgemm.bench.run import BenchConfig, benchmark
from edgemm.bench.worker import STAGES
from edgemm.cli import main
from edgemm.errors import EdgemmError


@pytest.fixture(scope="module")
def bench_files(avnet_bundle_dir, tmp_path_factory):
    """One short real benchmark through the CLI (onnxruntime only, batch 1, model + end_to_end at 15 fps),
    written as JSON, CSV and markdown."""
    d = tmp_path_factory.mktemp("bench")
    files = {k: d / f"bench.{k}" for k in ("json", "csv", "md")}
    rc = main(["-q", "bench", str(avnet_bundle_dir), "--backends", "onnxruntime", "--precisions", "fp32", "--batch", "1",
               "--seconds", "0.2", "--rounds", "2", "--fps", "15", "--json", str(files["json"]), "--csv", str(files["csv"]),
               "--markdown", str(files["md"]), "--no-progress"])
    assert rc == 0
    files["result"] = json.loads(files["json"].read_text())
    return files


def test_json_runs_and_end_to_end_stages(bench_files):
    runs = bench_files["result"]["runs"]
    assert sorted(r["mode"] for r in runs) == ["end_to_end", "model"]
    for r in runs:
        assert {"artifact", "backend", "precision", "mode", "baseline", "batch", "threads", "p50_ms", "p90_ms", "p99_ms",
                "mean_ms", "throughput", "peak_rss_mb", "size_mb", "metrics"} <= set(r)
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
    e2e = next(r for r in runs if r["mode"] == "end_to_end")
    assert e2e["fps"] == 15.0 and bench_files["result"]["config"]["fps"] == 15.0  # --fps reached the worker
    assert list(e2e["stages_ms"]) == list(STAGES)  # capture, pre-processing per modality, model, post-processing
    for k, v in e2e["stages_ms"].items():
        assert set(v) == {"p50", "p90", "p99"} and 0 <= v["p50"] <= v["p90"] <= v["p99"], k
    # the stages are parts of one frame: their medians cannot add up to much more than the frame's
    assert sum(v["p50"] for v in e2e["stages_ms"].values()) <= 1.5 * e2e["p50_ms"]
    # the model alone was timed in the end_to_end worker processes (same peak RSS), and both ratios are reported:
    # over the model stage of the same frames (>= 1: every frame contains its model call) and over the model alone
    model = next(r for r in runs if r["mode"] == "model")
    assert model["peak_rss_mb"] == e2e["peak_rss_mb"]
    assert e2e["over_model"] == pytest.approx(e2e["p50_ms"] / e2e["stages_ms"]["model"]["p50"], abs=2e-3)
    assert e2e["over_model"] >= 0.999
    assert e2e["over_model_alone"] == pytest.approx(e2e["p50_ms"] / model["p50_ms"], abs=1e-3)


def test_every_timing_carries_its_stability(bench_files):
    """Noise made visible: spread of the calls (p90/p50) and of the round medians per run, the machine's load and
    clock before and after, and a ratio marked as unsteady whenever one of its inputs is."""
    result = bench_files["result"]
    for r in result["runs"]:
        st = r["stability"]
        assert st["tail"] == pytest.approx(st["p90_ms"] / st["p50_ms"], rel=1e-3) and st["rounds"] >= 2
        assert st["p50_ms"] == pytest.approx(r["p50_ms"], rel=1e-4) and isinstance(st["stable"], bool)
    s = result["stability"]
    assert s["machine"]["before"]["cores"] >= 1 and "loadavg" in s["machine"]["after"]
    assert set(s["thresholds"]) == {"tail_max", "drift_max", "load_per_core_max"}
    assert (s["warning"] is None) == (not s["unstable"] and not s["problems"])
    assert result["config"]["rounds"] == 2 + s["extra_rounds"]


def test_csv_has_one_row_per_run_matching_the_json(bench_files):
    runs = bench_files["result"]["runs"]
    with open(bench_files["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(runs)
    assert set(COLUMNS) <= set(rows[0]) and "top1_digit" in rows[0] and "model_p50_ms" in rows[0]
    for row, run in zip(rows, runs):
        assert row["mode"] == run["mode"] and float(row["p50_ms"]) == pytest.approx(run["p50_ms"])
        if run["mode"] == "end_to_end":
            assert float(row["preprocess_audio_p50_ms"]) == pytest.approx(run["stages_ms"]["preprocess_audio"]["p50"])
        else:
            assert row["preprocess_audio_p50_ms"] == ""


def test_the_terminal_table_fits_100_columns(bench_files):
    from edgemm.bench.report import format_table

    text = format_table(bench_files["result"])
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "p50 ms" in text and "speedup" in text and "top-1" in text


def test_markdown_tables(bench_files):
    md = bench_files["md"].read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert sum(1 for ln in table if "| onnxruntime | fp32 |" in ln) == 3  # 2 runs + the stage breakdown row
    assert "end_to_end per video frame at 15 fps" in md
    assert "| " + " | ".join(STAGES) + " | total p50 | x model p50 |" in md
    assert "Command: `" in md


@pytest.mark.parametrize("ext,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_plot_formats_from_the_extension(bench_files, tmp_path, ext, magic):
    pytest.importorskip("matplotlib")
    out = tmp_path / f"p{ext}"
    write_plot(bench_files["result"], out)
    assert out.read_bytes().startswith(magic)


@pytest.mark.parametrize("flags,match", [
    (["--plot", "out.gif"], "--plot out.gif: use a .png, .svg or .pdf file name"),
    (["--fps", "0"], "--fps 0.0: must be positive"),
    (["--csv", "/nonexistent-dir/x.csv"], "--csv /nonexistent-dir/x.csv: folder /nonexistent-dir does not exist"),
    (["--batch", "1,x"], "--batch '1,x': give comma-separated integers"),
])
def test_bad_flags_are_one_line_before_measuring(avnet_bundle_dir, tmp_path, capsys, flags, match):
    out = tmp_path / "never.json"
    rc = main(["bench", str(avnet_bundle_dir), "--backends", "onnxruntime", "--json", str(out), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and match in err[0]
    assert not out.exists()  # nothing measured, nothing half-written


def test_a_worker_that_does_not_finish_is_stopped(avnet_bundle_dir):
    cfg = BenchConfig(backends=("onnxruntime",), precisions=("fp32",), batches=(1,), modes=("model",), seconds=0.2, rounds=1,
                      worker_timeout_s=0.3)
    with pytest.raises(EdgemmError, match=r"benchmark worker for .* on onnxruntime \(model, batch 1\) did not finish in 0.3 s "
                                          r"and was stopped") as exc:
        benchmark(avnet_bundle_dir, cfg)
    assert "\n" not in str(exc.value)


def test_each_end_to_end_job_shares_a_process_with_its_batch_1_model_job():
    from edgemm.bench.run import _units

    def job(mode, batch=1, artifact="a.onnx", backend="onnxruntime", baseline=False):
        return {"mode": mode, "batch": batch, "artifact": artifact, "backend": backend, "precision": "fp32", "baseline": baseline}

    jobs = [job("model"), job("model", 8), job("end_to_end"), job("model", artifact="b.onnx"),
            job("end_to_end", artifact="c.onnx"), job("stream")]
    assert _units(jobs) == [(2, 0), (1, None), (3, None), (4, None), (5, None)]
    assert _units([job("end_to_end")]) == [(0, None)]  # --modes end_to_end alone
    assert _units([job("model", 8), job("model")]) == [(0, None), (1, None)]
