"""Explicit Q/DQ ONNX quantization (the one INT8 interchange) with ONNX Runtime's quantizer.

Two schemes share one code path:
- ``ort``: for ONNX Runtime on CPU. uint8 asymmetric activations (the fast u8s8 kernels on
  x86 without VNNI), int8 per-channel weights, ORT's default op set.
- ``trt``: valid for TensorRT 10/11 (and fast in OpenVINO): symmetric int8 activations and
  weights, zero-points 0, per-channel weights on the output-channel axis, Q/DQ only in front of
  the ops TensorRT fuses with them (Conv, Gemm, MatMul, residual Add). ``check_trt_qdq`` proves it.

Calibration is done here, not inside ``quantize_static``: ORT's entropy calibrator defaults to
128 bins = 128 quantized bins, so "entropy" silently equals MinMax through ``quantize_static``
(it does not forward the bin options). We run ORT's calibrators with explicit options and hand
the ranges to the quantizer as ``TensorQuantOverrides`` (rmin/rmax), so the chosen method is
the one that takes effect.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...lazy import lazy_import
from ...data.calibration import CalibrationSource
from ...errors import EdgemmError

METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class QdqScheme:
    name: str
    activation: str  # "uint8" | "int8"
    symmetric_activations: bool
    op_types: tuple[str, ...] | None  # None: ORT's default set
    float_grouped_convs: bool = False  # grouped, not depthwise, convolutions kept float (graph.grouped_convs)


SCHEMES = {
    "ort": QdqScheme("ort", "uint8", False, None),
    # the scheme OpenVINO is quantized with too: its int8 grouped convolutions are wrong (graph.grouped_convs)
    "trt": QdqScheme("trt", "int8", True, ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add"), float_grouped_convs=True),
}


@contextlib.contextmanager
def _ort_logs_quiet():
    """ORT's quantizer logs harmless notes on the root logger (e.g. per-channel axis of LayerNorm weights)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _Reader:
    """ORT CalibrationDataReader over a CalibrationSource (batch 1: ranges per sample, as deployed)."""

    def __init__(self, calib: CalibrationSource):
        self._it = calib.iter_batches(1)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # not used by ORT's calibrators, kept for the protocol
        pass


def preprocess_for_quantization(src: Path, dst: Path) -> Path:
    """ORT's pre-processing (shape inference + graph optimisation) before Q/DQ insertion."""
    q = lazy_import("onnxruntime.quantization.shape_inference", "INT8 quantization")
    src, dst = Path(src).absolute(), Path(dst).absolute()
    # When symbolic shape inference gives up, ORT saves "sym_shape_infer_temp.onnx" and a "<uuid>.data" file into the
    # working directory: it runs inside a temp dir, so that an export writes nothing outside its output and the temp dir.
    with tempfile.TemporaryDirectory(prefix="edgemm-preprocess-") as tmp, contextlib.chdir(tmp):
        try:
            q.quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        except Exception:  # symbolic shape inference fails on some graphs; ONNX shape inference is enough
            q.quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    return dst


def calibrate(model_path: Path, calib: CalibrationSource, method: str, symmetric: bool, percentile: float = 99.99,
              skip: set[str] | frozenset = frozenset()) -> dict[str, tuple[float, float]]:
    """Activation ranges for every float tensor of the graph, by ``method``. ``skip``: tensors not to calibrate (an
    attention mask's -inf / -3.4e38 values break the histogram methods, and those tensors stay float anyway)."""
    if method not in METHODS:
        raise EdgemmError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    cal = lazy_import("onnxruntime.quantization.calibrate", "INT8 quantization")
    kind = {"minmax": cal.CalibrationMethod.MinMax, "percentile": cal.CalibrationMethod.Percentile,
            "entropy": cal.CalibrationMethod.Entropy}[method]
    options = {"symmetric": symmetric}
    if method == "entropy":
        options.update(num_bins=2048, num_quantized_bins=255 if not symmetric else 128)
    elif method == "percentile":
        options.update(num_bins=2048, percentile=percentile)
    with tempfile.TemporaryDirectory() as tmp, _ort_logs_quiet(), contextlib.redirect_stdout(io.StringIO()), \
            _not_calibrating(cal, skip):  # (stdout: "Collecting tensor data..." banners)
        calibrator = cal.create_calibrator(model_path, None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                           calibrate_method=kind, extra_options=options)
        calibrator.collect_data(_Reader(calib))
        data = calibrator.compute_data()
    ranges = {}
    for name, td in data.data.items():
        lo, hi = td.range_value
        ranges[name] = (float(np.asarray(lo).min()), float(np.asarray(hi).max()))
    return ranges


@contextlib.contextmanager
def _not_calibrating(cal, skip):
    """ONNX Runtime's calibrators measure every float tensor they pick (``select_tensors_to_calibrate``, which takes
    no exclusions and re-infers shapes, so value_info cannot hide a tensor): leave ``skip`` out of their pick while
    this block runs."""
    if not skip:
        yield
        return
    base = cal.CalibraterBase
    pick = base.select_tensors_to_calibrate

    def without(self, model):
        tensors, value_infos = pick(self, model)
        return {t for t in tensors if t not in skip}, value_infos

    base.select_tensors_to_calibrate = without
    try:
        yield
    finally:
        base.select_tensors_to_calibrate = pick


def quantize_qdq(model_path: Path, out_path: Path, calib: CalibrationSource, scheme: QdqScheme,
                 ranges: dict[str, tuple[float, float]], nodes_to_exclude: list[str] = (),
                 nodes_to_quantize: list[str] | None = None, reduce_range: bool = False) -> Path:
    """``reduce_range``: 7-bit weights, for U8S8 kernels that saturate on x86 without VNNI (see edgemm.cpu)."""
    q = lazy_import("onnxruntime.quantization", "INT8 quantization")
    act = q.QuantType.QUInt8 if scheme.activation == "uint8" else q.QuantType.QInt8
    overrides = {}
    for name, (lo, hi) in ranges.items():
        if not (np.isfinite(lo) and np.isfinite(hi)):
            continue  # a -inf attention mask: its nodes are kept float (graph.mask_like_nodes), no grid to give it
        if scheme.symmetric_activations:
            m = max(abs(lo), abs(hi), 1e-8)
            lo, hi = -m, m
        if hi - lo < 1e-8:
            hi = lo + 1e-8
        overrides[name] = [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
    extra = {"TensorQuantOverrides": overrides, "ActivationSymmetric": scheme.symmetric_activations,
             "WeightSymmetric": True}
    if scheme.name == "trt":
        extra["QuantizeBias"] = False  # TensorRT takes float biases; it has no INT32 DequantizeLinear
    kwargs = {}
    if scheme.op_types is not None:
        kwargs["op_types_to_quantize"] = list(scheme.op_types)
    float_nodes = always_float(lazy_import("onnx").load(str(model_path)), scheme)
    nodes_to_exclude = sorted(set(nodes_to_exclude) | set(float_nodes))
    if nodes_to_quantize is not None:
        kwargs["nodes_to_quantize"] = [n for n in nodes_to_quantize if n not in float_nodes]
    with _ort_logs_quiet():
        _quantize_static(q, model_path, out_path, calib, act, nodes_to_exclude, extra, dict(kwargs, reduce_range=reduce_range))
    return out_path


def always_float(model, scheme: QdqScheme) -> dict[str, str]:
    """Nodes ``scheme`` never quantizes -> why: Adds of a scalar constant, and (a scheme OpenVINO runs) grouped
    convolutions that are not depthwise (stages/quantize/graph.py: each broke OpenVINO's int8 Wav2Vec2 while
    onnxruntime ran the same Q/DQ file fine)."""
    from .graph import grouped_convs, scalar_constant_adds

    out = scalar_constant_adds(model)
    if scheme.float_grouped_convs:
        out.update(grouped_convs(model))
    return out


def _quantize_static(q, model_path, out_path, calib, act, nodes_to_exclude, extra, kwargs):
    q.quantize_static(
        str(model_path), str(out_path), _OneSample(calib), quant_format=q.QuantFormat.QDQ, per_channel=True,
        activation_type=act, weight_type=q.QuantType.QInt8, nodes_to_exclude=list(nodes_to_exclude),
        calibrate_method=q.CalibrationMethod.MinMax, extra_options=extra, **kwargs,
    )


class _OneSample(_Reader):
    """quantize_static insists on a reader; every range it would compute is overridden above."""

    def __init__(self, calib: CalibrationSource):
        self._it = iter([next(calib.iter_batches(1))])


def check_trt_qdq(model) -> list[str]:
    """Problems that stop TensorRT 10/11 from building this Q/DQ graph as INT8 (empty list: valid).

    Rules (TensorRT developer guide, "Working with Quantized Types"; ModelOpt's ONNX PTQ output):
    Q/DQ in INT8 only, zero-points all 0 (symmetric), scales positive and finite; per-channel
    scales only on constant weights along the output-channel axis (Conv: 0, Gemm/MatMul weights:
    the axis that indexes output features); every activation Q is followed by DQ; every
    Conv/Gemm/MatMul that is quantized has *all* its tensor inputs coming from DequantizeLinear.
    """
    onnx = lazy_import("onnx")
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consts = dict(inits)
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    problems = []
    qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return ["the graph has no QuantizeLinear/DequantizeLinear nodes (not an explicit-quantization model)"]
    for n in qdq:
        where = f"{n.op_type} {n.name or n.output[0]}"
        scale = consts.get(n.input[1]) if len(n.input) > 1 else None
        if scale is None:
            problems.append(f"{where}: scale is not a constant")
            continue
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            problems.append(f"{where}: scale must be positive and finite")
        if n.op_type == "DequantizeLinear" and n.input[0] in consts and consts[n.input[0]].dtype != np.int8:
            problems.append(f"{where}: dequantizes a {consts[n.input[0]].dtype} constant; TensorRT INT8 takes int8 only")
        if n.op_type == "QuantizeLinear" and not (len(n.input) > 2 and n.input[2]):
            problems.append(f"{where}: no zero-point input, so it quantizes to uint8; TensorRT needs int8")
        if len(n.input) > 2 and n.input[2]:
            zp = consts.get(n.input[2])
            if zp is None:
                problems.append(f"{where}: zero-point is not a constant")
            else:
                if zp.dtype != np.int8:
                    problems.append(f"{where}: zero-point dtype {zp.dtype}, TensorRT INT8 needs int8")
                if np.any(zp != 0):
                    problems.append(f"{where}: non-zero zero-point (TensorRT needs symmetric quantization)")
        per_channel = scale.ndim > 0 and scale.size > 1
        if per_channel:
            if n.op_type != "DequantizeLinear" or n.input[0] not in consts:
                problems.append(f"{where}: per-channel scales are only valid on constant weights")
            else:
                axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
                w = consts[n.input[0]]
                users = consumers.get(n.output[0], [])
                for u in users:
                    want = 0 if u.op_type in ("Conv",) else (w.ndim - 1 if u.op_type == "MatMul" else None)
                    if u.op_type == "Gemm":
                        trans_b = next((a.i for a in u.attribute if a.name == "transB"), 0)
                        want = 0 if trans_b else 1
                    if u.op_type == "ConvTranspose":
                        want = 1
                    if want is not None and axis % w.ndim != want:
                        problems.append(f"{where}: per-channel axis {axis} is not the output-channel axis {want} of {u.op_type}")
        if n.op_type == "QuantizeLinear":
            for u in consumers.get(n.output[0], []):
                if u.op_type != "DequantizeLinear":
                    problems.append(f"{where}: feeds {u.op_type} directly (TensorRT needs Q -> DQ pairs)")
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul", "ConvTranspose"):
            continue
        tensor_inputs = [x for x in n.input[:2] if x]
        from_dq = [x in producers and producers[x].op_type == "DequantizeLinear" for x in tensor_inputs]
        if any(from_dq) and not all(from_dq):
            problems.append(f"{n.op_type} {n.name or n.output[0]}: only some inputs are quantized (TensorRT fuses only fully quantized inputs)")
    del onnx
    return problems
