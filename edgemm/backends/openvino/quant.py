"""NNCF post-training quantization of the OpenVINO model (the `nncf` quantizer for the openvino target)."""
from __future__ import annotations

from pathlib import Path

from ...lazy import lazy_import
from ...data.calibration import CalibrationSource
from ...cpu import cpu_int8
from ...telemetry import disable_telemetry

ONNX_TO_OV_TYPES = {
    "Conv": ["Convolution", "GroupConvolution"], "MatMul": ["MatMul"], "Gemm": ["MatMul"], "Add": ["Add"],
    "Mul": ["Multiply"], "Softmax": ["SoftMax"], "LayerNormalization": ["MVN"], "ConvTranspose": ["ConvolutionBackpropData"],
}


def nncf_quantize(onnx_path: Path, out_xml: Path, calib: CalibrationSource, exclude_nodes: list[str], exclude_ops: list[str],
                  transformer: bool, exclude_outputs: list[str] = ()) -> Path:
    """fp32 ONNX -> INT8 IR. ``exclude_nodes`` are ONNX node names (OpenVINO keeps them as friendly-name prefixes);
    ``exclude_outputs``: the ONNX tensors those nodes write (OpenVINO keeps tensor names where it renames an op), so
    that a node kept float (a mask, a sensitive layer) is found in NNCF's ignored scope either way."""
    disable_telemetry()  # openvino_telemetry forks a process per event; Ctrl-C must reach only edgemm
    ov = lazy_import("openvino", "the nncf quantizer")
    nncf = lazy_import("nncf", "the nncf quantizer (pip install nncf)")
    model = ov.convert_model(str(onnx_path))
    wanted, tensors = set(exclude_nodes), set(exclude_outputs)

    def excluded(op) -> bool:
        name = op.get_friendly_name()
        if name in wanted or name.split("/")[0] in wanted:
            return True
        return any(t in tensors for out in op.outputs() for t in out.get_names())

    names = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() not in ("Parameter", "Constant", "Result")
             and excluded(op)]
    types = sorted({t for op in exclude_ops for t in ONNX_TO_OV_TYPES.get(op, [op])})
    scope = nncf.IgnoredScope(names=names, types=types, validate=False)
    dataset = nncf.Dataset(list(calib.iter_batches(1)))
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {"preset": nncf.QuantizationPreset.MIXED}
    if cpu_int8().u8s8_saturates:
        # Without VNNI the int8 dot products saturate 16-bit sums; NNCF's overflow fix (7-bit weights) on every layer,
        # not only the first (its default): measured on AVX2, whole-model drop 0.15 -> 0.075 (benchmarks/results/int8-*).
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.ENABLE)
    q = nncf.quantize(model, dataset, subset_size=len(calib), ignored_scope=scope, **kwargs)
    ov.save_model(q, str(out_xml))
    return out_xml
