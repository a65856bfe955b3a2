"""What TensorRT accepts in an ONNX model, checked on the graph before a build (a one-line reason instead of a
parser failure on the GPU machine), and the 2:4 sparse weights a build can use.

Q/DQ rules (onnx-tensorrt ``docs/operators.md``: QuantizeLinear "``y_zero_point`` must be 0", DequantizeLinear
"``x_zero_point`` must be zero"; TensorRT developer guide, "Explicit Quantization"):

- INT8 only: a DequantizeLinear of a constant reads int8; a QuantizeLinear has an int8 zero-point (without one it
  quantizes to uint8);
- symmetric: every zero-point is 0; scales are constants, positive and finite;
- per-channel scales only on constant weights, along the output-channel axis of the Conv/Gemm/MatMul reading them;
- every activation QuantizeLinear feeds DequantizeLinear nodes only (TensorRT fuses Q -> DQ pairs);
- a Conv/Gemm/MatMul with one quantized input has all its inputs quantized;
- the QDQ format only: ONNX Runtime's QOperator ops (QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger,
  DynamicQuantizeLinear) are unsupported by the ONNX-TensorRT parser, and ops of other domains (com.microsoft)
  would need plugins.

2:4 sparsity (``BuilderFlag.SPARSE_WEIGHTS``; NVIDIA, "Accelerating Inference with Sparsity Using the NVIDIA Ampere
Architecture and NVIDIA TensorRT"): in every run of 4 weights along the input-channel (reduction) dimension of a
Conv/Gemm/MatMul, at most 2 are non-zero; the sparse tensor cores exist from compute capability 8.0.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ...lazy import lazy_import

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
QOPERATOR_OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear")
SPARSE_MIN_CC = (8, 0)


def _constants(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            value = next((a for a in n.attribute if a.name == "value"), None)
            if value is not None:
                consts[n.output[0]] = numpy_helper.to_array(value.t)
    return consts


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return a.i
    return default


def _output_axis(user, ndim: int) -> int | None:
    """The axis of a weight that indexes ``user``'s output channels (None: not a weighted op)."""
    if user.op_type == "Conv":
        return 0
    if user.op_type == "ConvTranspose":
        return 1
    if user.op_type == "Gemm":
        return 0 if _attr(user, "transB", 0) else 1
    if user.op_type == "MatMul":
        return ndim - 1
    return None


def trt_qdq_problems(model) -> list[str]:
    """Why TensorRT cannot build this Q/DQ model as INT8 (empty list: it can). ``model``: an onnx.ModelProto."""
    lazy_import("onnx")
    g = model.graph
    consts = _constants(model)
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    problems: list[str] = []
    foreign = sorted({f"{n.domain}::{n.op_type}" for n in g.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        problems.append(f"ops of other domains ({', '.join(foreign[:4])}) need TensorRT plugins; export a plain ONNX Q/DQ model")
    qop = sorted({n.op_type for n in g.node if n.op_type in QOPERATOR_OPS})
    if qop:
        problems.append(f"QOperator-format ops ({', '.join(qop)}) are not supported by TensorRT; quantize in the QDQ format")
    qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return problems + ["the graph has no QuantizeLinear/DequantizeLinear nodes (not an explicitly quantized model)"]
    for n in qdq:
        where = f"{n.op_type} {n.name or n.output[0]}"
        scale = consts.get(n.input[1]) if len(n.input) > 1 else None
        if scale is None:
            problems.append(f"{where}: scale is not a constant")
            continue
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            problems.append(f"{where}: scale must be positive and finite")
        if n.op_type == "DequantizeLinear" and n.input[0] in consts and consts[n.input[0]].dtype != np.int8:
            problems.append(f"{where}: dequantizes a {consts[n.input[0]].dtype} constant; TensorRT INT8 takes int8")
        zp_name = n.input[2] if len(n.input) > 2 else ""
        if n.op_type == "QuantizeLinear" and not zp_name:
            problems.append(f"{where}: no zero-point, so it quantizes to uint8; TensorRT needs int8")
        if zp_name:
            zp = consts.get(zp_name)
            if zp is None:
                problems.append(f"{where}: zero-point is not a constant")
            else:
                if zp.dtype != np.int8:
                    problems.append(f"{where}: zero-point dtype {zp.dtype}; TensorRT INT8 needs int8")
                if np.any(zp != 0):
                    problems.append(f"{where}: non-zero zero-point; TensorRT needs symmetric quantization (zero-point 0)")
        if scale.size > 1:
            if n.op_type != "DequantizeLinear" or n.input[0] not in consts:
                problems.append(f"{where}: per-channel scales on an activation; TensorRT takes them on constant weights only")
            else:
                w = consts[n.input[0]]
                axis = _attr(n, "axis", 1) % max(w.ndim, 1)
                for u in consumers.get(n.output[0], []):
                    want = _output_axis(u, w.ndim)
                    if want is not None and axis != want:
                        problems.append(f"{where}: per-channel axis {axis} is not the output-channel axis {want} of {u.op_type}")
        if n.op_type == "QuantizeLinear":
            for u in consumers.get(n.output[0], []):
                if u.op_type != "DequantizeLinear":
                    problems.append(f"{where}: feeds {u.op_type} directly; TensorRT needs Q -> DQ pairs")
    for n in g.node:
        if n.op_type not in WEIGHTED_OPS:
            continue
        data = [x for x in n.input[:2] if x]
        from_dq = [x in producers and producers[x].op_type == "DequantizeLinear" for x in data]
        if any(from_dq) and not all(from_dq):
            problems.append(f"{n.op_type} {n.name or n.output[0]}: only some inputs are quantized; TensorRT fuses fully quantized inputs only")
    return problems


def is_2_4(weight: np.ndarray, in_axis: int) -> bool:
    """Every run of 4 along ``in_axis`` has at most 2 non-zeros (and the axis holds whole runs of 4)."""
    if weight.ndim < 2 or weight.shape[in_axis] % 4 or weight.size == 0:
        return False
    quads = (np.moveaxis(weight, in_axis, -1).reshape(-1, 4) != 0).sum(axis=1)
    return bool((quads <= 2).all()) and bool(np.any(weight))


def _input_axis(user, ndim: int) -> int | None:
    if user.op_type == "Conv":
        return 1
    if user.op_type == "Gemm":
        return 1 if _attr(user, "transB", 0) else 0
    if user.op_type == "MatMul":
        return ndim - 2
    return None


def sparse_layers(model) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes whose constant weights hold the 2:4 pattern (through a DequantizeLinear
    for an int8 model): the layers ``BuilderFlag.SPARSE_WEIGHTS`` can run on sparse tensor cores."""
    g = model.graph
    consts = _constants(model)
    producers = {o: n for n in g.node for o in n.output}
    found = []
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul") or len(n.input) < 2:
            continue
        w_name = n.input[1]
        if w_name not in consts and w_name in producers and producers[w_name].op_type == "DequantizeLinear":
            w_name = producers[w_name].input[0]
        w = consts.get(w_name)
        if w is None:
            continue
        axis = _input_axis(n, w.ndim)
        if axis is not None and is_2_4(w, axis):
            found.append(n.name or n.output[0])
    return found


def sparse_decision(option: str, layers: Iterable[str], compute_capability: tuple[int, int] | None) -> dict:
    """Whether to set ``SPARSE_WEIGHTS``: ``option`` "on" | "off" | "auto" (on where 2:4 layers exist), plus a note
    when the GPU has no sparse tensor cores. The dict is what the artifact records."""
    layers = sorted(layers)
    enabled = option == "on" or (option == "auto" and bool(layers))
    note = None
    if enabled and compute_capability is not None and tuple(compute_capability) < SPARSE_MIN_CC:
        note = (f"compute capability {compute_capability[0]}.{compute_capability[1]} has no sparse tensor cores (needs 8.0+); "
                "the flag is set but gains nothing here")
    elif enabled and not layers:
        note = "no layer holds the 2:4 pattern; TensorRT finds nothing to run sparse"
    return {"enabled": enabled, "layers": layers, "note": note}
