"""torch model -> .tflite with litert-torch: fp32 as it is, int8 through litert-torch's PT2E quantizer.

The model is converted at batch 1 (fixed shapes): LiteRT's XNNPACK delegate then plans the whole graph once
(one subgraph, weights packed, memory planned), which is why it runs small models fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from ...errors import EdgemmError
from ...lazy import lazy_import
from ...torchutil import quiet


CONVERT_INSTALL = ("pip install 'edgemm[litert-convert]' (litert-torch pulls ~0.9 GB and pins typing_extensions < 4.13: "
                   "install it in a virtual environment of its own)")

# ONNX op types a precision policy names (edgemm's [precision] exclude_ops) -> the torch module types that make them:
# litert-torch's quantizer keeps those modules float.
OP_MODULES = {"Conv": ("Conv1d", "Conv2d", "Conv3d"), "ConvTranspose": ("ConvTranspose1d", "ConvTranspose2d"),
              "Gemm": ("Linear",), "MatMul": ("Linear",), "Softmax": ("Softmax",), "LayerNormalization": ("LayerNorm",)}


def litert_torch():
    return lazy_import("litert_torch", f"converting to LiteRT; {CONVERT_INSTALL}")


def batch_one(args: Sequence) -> tuple:
    """The example arguments cut to batch 1 (contiguous: litert-torch traces the tensors it is given)."""
    return tuple(a[:1].contiguous() for a in args)


def float_module_names(module, float_parts: Iterable[str], exclude_ops: Iterable[str]) -> tuple[list[str], list[type]]:
    """What the policy keeps float, in the quantizer's terms: submodule names (a part named like a submodule, e.g.
    avnet's ``image`` branch, keeps all of it float) and module types (from ONNX op types)."""
    torch = lazy_import("torch")
    children = dict(module.named_modules())
    names = []
    for part in float_parts:
        if part not in children:
            have = sorted(n for n in dict(module.named_children()))
            raise EdgemmError(f"[precision] float part {part!r} is not a submodule of {type(module).__name__}, so litert "
                              f"cannot keep it float; name one of its submodules ({', '.join(have)}) or drop --target litert")
        names.append(part)
    types = []
    for op in exclude_ops:
        for cls in OP_MODULES.get(op, ()):
            types.append(getattr(torch.nn, cls))
    return names, types


def convert_fp32(module, args: Sequence, out: Path) -> Path:
    """The float model as a .tflite file at ``out``."""
    lt = litert_torch()
    torch = lazy_import("torch")
    with torch.no_grad(), quiet():  # litert-torch prints a progress banner per conversion step
        edge = lt.convert(module, batch_one(args))
    with quiet():  # "Write Model to ..." banners
        edge.export(str(out))
    return out


def quantization_config(per_channel: bool, method: str):
    """litert-torch's static symmetric int8 config, its activation observer following edgemm's calibration method:
    ``minmax`` (edgemm's default) observes min/max; ``percentile`` and ``entropy`` keep litert-torch's own histogram
    observer (it searches the range that minimises the quantization error; 76 s more than min/max on avnet's ~80
    activations at convert time)."""
    import dataclasses

    pt2e = lazy_import("litert_torch.quantize.pt2e_quantizer", f"converting to LiteRT int8; {CONVERT_INSTALL}")
    config = pt2e.get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=False)
    if method != "minmax":
        return config
    observer = lazy_import("torchao.quantization.pt2e.observer").MinMaxObserver.with_args(eps=2 ** -12)
    swap = {f: dataclasses.replace(getattr(config, f), observer_or_fake_quant_ctr=observer)
            for f in ("input_activation", "output_activation") if getattr(config, f) is not None}
    return dataclasses.replace(config, **swap)


def convert_int8(module, args: Sequence, out: Path, calibration: Iterable[tuple], *, dynamic=None, per_channel: bool = True,
                 method: str = "minmax", calibration_batch: int = 32,
                 float_parts: Iterable[str] = (), exclude_ops: Iterable[str] = ()) -> Path:
    """Static int8 (weights and activations) through litert-torch's PT2E quantizer, its ranges observed on
    ``calibration`` (tuples of torch tensors in the model's argument order, any batch). ``args``: batch >= 2
    examples; ``dynamic``: their ``torch.export`` dynamic shapes (edgemm.torchutil.dynamic_shapes)."""
    lt = litert_torch()
    torch = lazy_import("torch")
    quant_config = lazy_import("litert_torch.quantize.quant_config", f"converting to LiteRT int8; {CONVERT_INSTALL}")
    pt2e = lazy_import("litert_torch.quantize.pt2e_quantizer", f"converting to LiteRT int8; {CONVERT_INSTALL}")
    prepare_pt2e, convert_pt2e = _pt2e_functions()
    quantizer = pt2e.PT2EQuantizer().set_global(quantization_config(per_channel, method))
    names, types = float_module_names(module, float_parts, exclude_ops)
    for name in names:
        quantizer.set_module_name(name, None)
    for cls in types:
        quantizer.set_module_type(cls, None)
    example = batch_one(args)
    # The MHA fast path is one fused op PT2E cannot annotate (STACK.md): off while tracing.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), quiet():
            # Traced with a dynamic batch so that calibration runs ``calibration_batch`` samples a call (litert-torch's
            # HistogramObserver costs the same per call at any batch: 256 single samples took 4 min on avnet);
            # the quantized graph is then converted at batch 1.
            graph = torch.export.export(module, tuple(args), dynamic_shapes=dynamic, strict=False).module()
            prepared = prepare_pt2e(graph, quantizer)
            seen = 0
            for batch in calibration:
                for i in range(0, len(batch[0]), calibration_batch):
                    chunk = tuple(t[i:i + calibration_batch] for t in batch)
                    if len(chunk[0]) < 2:  # the traced batch axis starts at 2
                        chunk = tuple(torch.cat([t, t]) for t in chunk)
                    prepared(*chunk)
                    seen += 1
            if not seen:
                raise EdgemmError("litert int8 got no calibration samples; pass --calib or set [data] calibration")
            quantized = convert_pt2e(prepared, fold_quantize=False)
            edge = lt.convert(quantized, example, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    with quiet():  # "Write Model to ..." banners
        edge.export(str(out))
    return out


def _pt2e_functions():
    """prepare_pt2e / convert_pt2e of torchao: litert-torch's PT2EQuantizer subclasses torchao's Quantizer, which
    torch.ao's (deprecated) functions do not take."""
    m = lazy_import("torchao.quantization.pt2e.quantize_pt2e", f"converting to LiteRT int8; {CONVERT_INSTALL}")
    return m.prepare_pt2e, m.convert_pt2e
