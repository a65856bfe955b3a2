"""Q/DQ quantizers: TensorRT validity, calibration methods that really differ, precision policy."""
from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest

import edgemm
from edgemm.data.calibration import calibration_source
from edgemm.errors import EdgemmError
from edgemm.stages.quantize import graph as G
from edgemm.stages.quantize.ptq import PrecisionPolicy
from edgemm.stages.quantize.qdq import SCHEMES, calibrate, check_trt_qdq, preprocess_for_quantization, quantize_qdq


@pytest.fixture
def fp32_onnx(two_branch_data, tmp_path):
    model, spec, calib, evaluation = two_branch_data()
    b = edgemm.export(model, spec=spec, output=tmp_path / "fp32", evaluation=evaluation, targets=["onnxruntime"])
    pre = preprocess_for_quantization(b.root / "onnx/model.fp32.onnx", tmp_path / "pre.onnx")
    m = G.name_nodes(onnx.load(str(pre)))
    onnx.save(m, str(pre))
    return pre, spec, calib


def _quantize(pre, spec, calib_path, scheme, method="minmax", exclude=()):
    calib = calibration_source(calib_path, spec)
    ranges = calibrate(pre, calib, method, symmetric=SCHEMES[scheme].symmetric_activations)
    out = pre.with_name(f"{scheme}-{method}-{len(exclude)}.onnx")
    quantize_qdq(pre, out, calib, SCHEMES[scheme], ranges, nodes_to_exclude=list(exclude))
    return out


def test_trt_scheme_passes_the_tensorrt_check_and_ort_scheme_does_not(fp32_onnx):
    pre, spec, calib = fp32_onnx
    trt = onnx.load(str(_quantize(pre, spec, calib, "trt")))
    assert check_trt_qdq(trt) == []
    zps = [onnx.numpy_helper.to_array(t) for t in trt.graph.initializer if "zero_point" in t.name]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    problems = check_trt_qdq(onnx.load(str(_quantize(pre, spec, calib, "ort"))))
    assert any("uint8" in p or "zero-point" in p for p in problems)


def test_check_rejects_a_float_model(fp32_onnx):
    pre, _, _ = fp32_onnx
    assert check_trt_qdq(onnx.load(str(pre))) == ["the graph has no QuantizeLinear/DequantizeLinear nodes (not an explicit-quantization model)"]


def test_check_rejects_partially_quantized_matmul(fp32_onnx):
    pre, spec, calib = fp32_onnx
    m = onnx.load(str(_quantize(pre, spec, calib, "trt")))
    # Re-wire one weighted node's activation input past its DequantizeLinear.
    producers = {o: n for n in m.graph.node for o in n.output}
    for node in m.graph.node:
        if node.op_type in ("Gemm", "MatMul") and producers.get(node.input[0]) is not None and producers[node.input[0]].op_type == "DequantizeLinear":
            q = producers[producers[node.input[0]].input[0]]
            node.input[0] = q.input[0]
            break
    assert any("only some inputs are quantized" in p for p in check_trt_qdq(m))


def test_calibration_methods_really_differ(fp32_onnx, tmp_path):
    pre, spec, _ = fp32_onnx
    rng = np.random.default_rng(5)
    heavy = {k: rng.standard_t(2, size=(300, 8)).astype(np.float32) for k in ("a", "b")}  # heavy tails
    np.savez(tmp_path / "heavy.npz", **heavy)
    calib = calibration_source(tmp_path / "heavy.npz", spec)
    ranges = {m: calibrate(pre, calib, m, symmetric=False) for m in ("minmax", "percentile", "entropy")}
    width = {m: ranges[m]["a"][1] - ranges[m]["a"][0] for m in ranges}
    assert width["percentile"] < width["minmax"] and width["entropy"] < width["minmax"]
    digests = {m: hashlib.sha256(_quantize(pre, spec, tmp_path / "heavy.npz", "ort", m).read_bytes()).hexdigest() for m in ranges}
    assert len(set(digests.values())) == 3


def test_policy_keeps_a_branch_and_op_types_float(fp32_onnx):
    pre, spec, calib = fp32_onnx
    model = onnx.load(str(pre))
    branches = G.node_branches(model)
    assert set(branches.values()) == {"a", "b", "fusion"}
    keep_a = PrecisionPolicy(float_parts=("a",)).nodes(model)
    assert keep_a and all(branches[n] == "a" for n in keep_a)
    q = onnx.load(str(_quantize(pre, spec, calib, "ort", exclude=sorted(keep_a))))
    producers = {o: n for n in q.graph.node for o in n.output}
    weighted = [n for n in q.graph.node if n.op_type in ("Gemm", "MatMul")]
    quantized = [n for n in weighted if producers.get(n.input[0]) is not None and producers[n.input[0]].op_type == "DequantizeLinear"]
    assert len(weighted) == 3 and len(quantized) == 2  # branch a's layer stayed float
    gemm_free = PrecisionPolicy(exclude_ops=("Gemm", "MatMul")).nodes(model)
    assert {n.name for n in G.weighted_nodes(model)} <= gemm_free


def test_policy_unknown_part_names_the_parts(fp32_onnx):
    pre, _, _ = fp32_onnx
    with pytest.raises(EdgemmError, match=r"unknown part\(s\) \['c'\].*a, b, fusion"):
        PrecisionPolicy(float_parts=("c",)).nodes(onnx.load(str(pre)))
