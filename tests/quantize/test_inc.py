"""The ``inc`` quantizer (Intel Neural Compressor 3.x, PT2E on the torch model -> Q/DQ ONNX), run for real."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import edgemm
from edgemm.errors import EdgemmError

try:
    HAVE_INC = importlib.util.find_spec("neural_compressor") is not None
    if HAVE_INC:
        import neural_compressor.torch.quantization  # noqa: F401  (plain `neural-compressor` lacks cpuinfo)
except ImportError:
    HAVE_INC = False

pytestmark = pytest.mark.skipif(not HAVE_INC, reason="neural_compressor is not installed: pip install 'edgemm[inc]'")


def _export(model, spec, calib, evaluation, out, targets=("onnxruntime",), **kw):
    return edgemm.export(model, spec=spec, output=out, int8=True, quantizer="inc", calibration=calib,
                         evaluation=evaluation, targets=list(targets), speed_guard=False, **kw)


def test_inc_makes_a_qdq_onnx_that_runs(two_branch_data, tmp_path):
    onnx = pytest.importorskip("onnx")
    model, spec, calib, evaluation = two_branch_data()
    b = _export(model, spec, calib, evaluation, tmp_path / "b", max_drop=None)
    art = next(a for a in b.artifacts if a.precision == "int8")
    assert art.path == "onnx/model.int8.onnx" and art.method == "ptq" and art.extra["quantizer"] == "inc"
    assert "neural-compressor" in art.toolchain and art.extra["speed"]["guard"] is False
    ops = [n.op_type for n in onnx.load(str(b.root / art.path)).graph.node]
    assert ops.count("QuantizeLinear") >= 3 and ops.count("DequantizeLinear") >= 3
    rt = edgemm.load(b, backend="onnxruntime", precision="int8")
    feeds = {k: v[:5] for k, v in np.load(evaluation).items() if k in ("a", "b")}
    out = rt.run(feeds)
    assert out["cls"].shape == (5, 4)  # dynamic batch kept
    acc = json.loads((b.root / "reports/accuracy.json").read_text())["artifacts"][art.path]
    assert acc["method"] == "ptq" and acc["drop"]["cls"] <= 0.1


def test_inc_autotune_meets_a_budget(two_branch_data, tmp_path):
    model, spec, calib, evaluation = two_branch_data()
    b = _export(model, spec, calib, evaluation, tmp_path / "b", max_drop=0.05)
    art = next(a for a in b.artifacts if a.precision == "int8")
    assert art.extra["budget"]["met"] is True and art.extra["budget"]["drop_on_target"] <= 0.05 + 1e-9
    for k in art.extra["kept_float"]:
        assert set(k) == {"reason", "nodes", "layers"} and k["reason"].startswith("accuracy: INC autotune")


def test_inc_refuses_tensorrt_in_one_line(two_branch_data, tmp_path):
    model, spec, calib, evaluation = two_branch_data()
    with pytest.raises(EdgemmError, match=r"inc quantizer makes asymmetric uint8 activations, which tensorrt rejects .*; use --quantizer tensorrt=trt") as e:
        _export(model, spec, calib, evaluation, tmp_path / "b", targets=("tensorrt",))


def test_inc_autotune_keeps_the_broken_layers_float(two_branch_data, tmp_path):
    # Outliers in `a` break every layer downstream of it: INC's search keeps a few layers float, not all.
    model, spec, calib, evaluation = two_branch_data(outliers=("a",))
    b = _export(model, spec, calib, evaluation, tmp_path / "b", max_drop=0.1)
    art = next(a for a in b.artifacts if a.precision == "int8")
    kept = [layer for k in art.extra["kept_float"] for layer in k["layers"]]
    assert art.extra["budget"]["met"] is True and "fa" in kept and len(kept) < 3
