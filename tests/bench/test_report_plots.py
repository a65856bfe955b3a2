"""Bench output a reviewer pastes, on a fixed result (no timing): the matplotlib figure's panels (one per mode and
batch, log latency axis, horizontal bars, the baseline named as the torch eager reference, accuracy vs latency with
its Pareto front), the 100-column table, ``~`` on unsteady numbers, and the end_to_end ratio that cannot go below 1."""
from __future__ import annotations

import pytest

from edgemm.bench.report import BASELINE_NAME, format_markdown, format_table, pareto_front, plot_figure, write_plot
from edgemm.bench.run import _ratios

pytest.importorskip("matplotlib")


def _run(artifact, backend, precision, mode, batch, p50, top1, baseline=False, stable=True, **extra):
    return {"id": artifact, "graph": "main", "artifact": artifact, "backend": backend, "precision": precision, "mode": mode,
            "baseline": baseline, "batch": batch, "threads": 2, "p50_ms": p50, "p90_ms": p50 * 1.2, "p99_ms": p50 * 1.5,
            "mean_ms": p50 * 1.05, "throughput": batch * 1000 / p50, "peak_rss_mb": 100.0, "size_mb": 1.0,
            "metrics": {"digit": top1, "speaker": 0.9}, "stability": {"stable": stable}, **extra}


def _result():
    runs = [
        _run("reference/model.pt2", "torch", "fp32", "model", 1, 40.0, 0.963, baseline=True),
        _run("onnx/model.fp32.onnx", "onnxruntime", "fp32", "model", 1, 0.60, 0.963),
        _run("onnx/model.int8.onnx", "onnxruntime", "int8", "model", 1, 0.50, 0.960),
        _run("openvino/model.fp16.xml", "openvino", "fp16", "model", 1, 0.70, 0.961, stable=False),
        _run("openvino/a-very-long-folder-name/model.int8.xml", "openvino", "int8", "model", 1, 0.80, 0.955),
        _run("reference/model.pt2", "torch", "fp32", "model", 8, 200.0, 0.963, baseline=True),
        _run("onnx/model.fp32.onnx", "onnxruntime", "fp32", "model", 8, 3.0, 0.963),
        _run("reference/model.pt2", "torch", "fp32", "end_to_end", 1, 41.0, 0.963, baseline=True, fps=30.0,
             stages_ms={"model": {"p50": 39.0}}),
        _run("onnx/model.fp32.onnx", "onnxruntime", "fp32", "end_to_end", 1, 1.1, 0.963, fps=30.0,
             stages_ms={"capture": {"p50": 0.05}, "model": {"p50": 0.9}}),
    ]
    runs[1]["p50_ms"] = 2.0  # the model alone, measured in a slow spell: above its own frames' total
    result = {"machine": {"cpu": "Test CPU", "cores": 2, "isa": ["avx2"], "date": "2026-12-05T00:00:00+00:00"},
              "config": {"batches": [1, 8], "threads": 2, "modes": ["model", "end_to_end"], "seconds_per_round": 1.5,
                         "rounds": 2, "fps": 30.0, "command": "edgemm bench B"}, "runs": runs}
    _ratios(runs, [{}] * len(runs), {i: [[r["p50_ms"]]] for i, r in enumerate(runs)})
    return result


def test_one_log_scale_panel_per_mode_and_batch_and_the_accuracy_front():
    result = _result()
    fig = plot_figure(result)
    try:
        titles = [ax.get_title(loc="left") for ax in fig.axes]
        assert titles == ["model, batch 1", "model, batch 8", "end_to_end, batch 1", "accuracy vs latency (digit)"]
        assert all(ax.get_xscale() == "log" for ax in fig.axes)
        for ax, (mode, batch) in zip(fig.axes[:3], (("model", 1), ("model", 8), ("end_to_end", 1))):
            runs = sorted((r for r in result["runs"] if r["mode"] == mode and r["batch"] == batch), key=lambda r: r["p50_ms"])
            bars = [p for p in ax.patches]
            assert [round(b.get_width(), 6) for b in bars] == [round(r["p50_ms"], 6) for r in runs]  # horizontal bars
            assert all(b.get_height() < 1 for b in bars)
            labels = [t.get_text() for t in ax.get_yticklabels()]
            assert BASELINE_NAME in labels and not any("reference/model.pt2" in t for t in labels)
            assert len(set(labels)) == len(labels)
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert "openvino fp16 (openvino/model.fp16.xml) ~" in labels  # an unsteady timing is marked
        acc = fig.axes[3]
        front = [ln for ln in acc.get_lines() if "Pareto" in (ln.get_label() or "")]
        assert len(front) == 1
        xs = list(front[0].get_xdata())
        assert xs == [0.5, 0.7, 2.0]  # int8 (fastest), fp16, fp32 (each more accurate); torch (40 ms, as accurate) is not
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend[0] == BASELINE_NAME and {"int8", "fp16", "fp32", "p99"} <= set(legend)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


@pytest.mark.parametrize("ext,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_the_plot_file_is_written_in_the_format_of_its_extension(tmp_path, ext, magic):
    out = tmp_path / f"bench{ext}"
    write_plot(_result(), out)
    assert out.read_bytes().startswith(magic)


def test_pareto_front():
    pts = [(1.0, 0.90), (0.5, 0.80), (2.0, 0.95), (1.5, 0.85), (0.5, 0.70), (3.0, 0.95)]
    assert pareto_front(pts) == [1, 0, 2]


def test_the_table_fits_100_columns_and_marks_unsteady_numbers():
    result = _result()
    text = format_table(result)
    assert max(len(line) for line in text.splitlines()) <= 100
    row = next(line for line in text.splitlines() if line.startswith("openvino/model.fp16.xml") and "model" in line)
    assert "~0.700" in row and "~57.14x" in row  # its own p50 and the speedup computed from it
    assert any(line.startswith(BASELINE_NAME) for line in text.splitlines())
    assert "…" in text  # the long artifact path is cut from the left


def test_end_to_end_over_model_is_never_below_one_and_unsteady_ratios_are_marked():
    result = _result()
    e2e = next(r for r in result["runs"] if r["mode"] == "end_to_end" and not r["baseline"])
    assert e2e["over_model_alone"] == pytest.approx(0.55)  # the impossible value a separate model timing gives ...
    assert e2e["over_model"] == pytest.approx(1.1 / 0.9, abs=1e-3)  # ... the same frames' model stage cannot
    md = format_markdown(result)
    assert "0.55x" not in md and "1.22x" in md
    fp16 = next(line for line in md.splitlines() if "| openvino | fp16 |" in line)
    assert "~0.700" in fp16 and "~57.14x" in fp16
    assert f"| {BASELINE_NAME} |" in md
