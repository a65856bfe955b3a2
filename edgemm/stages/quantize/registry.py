"""The quantizer registry: what each INT8 quantizer is (name, targets served, what it produces).

Built-ins are declared here; other packages add theirs under the ``edgemm.quantizers`` entry-point
group (an instance of ``Quantizer`` with a Q/DQ scheme). The recipe, the CLI and the pipeline all read
this one set; a plugin that fails in any way is left out and named by ``broken_quantizers`` (and by
``get_quantizer`` when asked for), see ``edgemm.plugins``.

``works_on`` says what the PTQ algorithm hands the quantizer: ``onnx-qdq`` (ONNX Runtime's Q/DQ
insertion on the fp32 ONNX with ``scheme``), ``openvino`` (NNCF on the OpenVINO model) or
``torch`` (the user's nn.Module: INC's PT2E flow with its own accuracy-driven search) or ``module`` (the target
backend's own converter quantizes the torch model: ``Backend.compile_module``, LiteRT).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ...backends.base import Backend
from ...errors import EdgemmError, close_match_hint, on_command_line, setting, switch
from ...plugins import (BrokenPluginInfo, PluginRejected, check_name, check_strings, check_type, entry_point_values,
                        load_entry_points, plugins_enabled)
from .qdq import SCHEMES, QdqScheme

GROUP = "edgemm.quantizers"


@dataclass(frozen=True)
class Quantizer:
    name: str
    description: str
    produces: str  # artifact format: "onnx" (Q/DQ) | "openvino-ir"
    works_on: str  # "onnx-qdq" | "openvino" | "torch" | "module"
    symmetric_activations: bool  # int8 activations with zero-point 0 (TensorRT-valid)
    targets: tuple[str, ...] | None = None  # backends it serves; None: any backend that runs what it produces
    scheme: QdqScheme | None = None  # for works_on == "onnx-qdq"
    extra: str | None = None  # the pip extra it needs, for the install hint


BUILTIN = (
    Quantizer("ort", "ONNX Runtime Q/DQ: uint8 activations, int8 per-channel weights (7-bit on x86 without VNNI)",
              "onnx", "onnx-qdq", False, scheme=SCHEMES["ort"]),
    Quantizer("trt", "TensorRT-valid symmetric int8 Q/DQ (zero-points 0, float biases) before Conv/Gemm/MatMul/Add "
              "(7-bit weights for CPU targets on x86 without VNNI)",
              "onnx", "onnx-qdq", True, scheme=SCHEMES["trt"]),
    Quantizer("nncf", "NNCF post-training quantization of the OpenVINO model -> INT8 IR", "openvino-ir", "openvino", True,
              targets=("openvino",), extra="openvino"),
    Quantizer("inc", "Intel Neural Compressor 3.x PT2E static PTQ on the torch model (+ autotune under the budget) -> Q/DQ ONNX, "
              "uint8 activations", "onnx", "torch", False, extra="inc"),
    Quantizer("litert", "litert-torch PT2E static int8 on the torch model (symmetric int8 activations, per-channel weights) "
              "-> .tflite", "tflite", "module", True, targets=("litert",), extra="litert-convert"),
)


def check_quantizer(obj) -> None:
    """Raise PluginRejected unless ``obj`` is a Quantizer a plugin may add (only Q/DQ schemes can come from a plugin)."""
    if not isinstance(obj, Quantizer):
        what = f"the class {obj.__module__}.{obj.__qualname__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise PluginRejected(f"it is {what}, not an edgemm Quantizer instance (edgemm.stages.quantize.registry.Quantizer)")
    check_name(obj.name, "name", {q.name: "a built-in quantizer's name" for q in BUILTIN})
    check_type(obj.description, "description", (str,))
    if obj.works_on != "onnx-qdq" or obj.produces != "onnx" or not isinstance(obj.scheme, QdqScheme):
        raise PluginRejected("a plugin quantizer must work on ONNX Q/DQ (works_on='onnx-qdq', produces='onnx') with a "
                             f"QdqScheme; it declares works_on={obj.works_on!r}, produces={obj.produces!r}, "
                             f"scheme={type(obj.scheme).__name__}")
    check_type(obj.symmetric_activations, "symmetric_activations", (bool,))
    if obj.targets is not None:
        check_strings(obj.targets, "targets")
    check_type(obj.extra, "extra", (str,), none=True)


@lru_cache(maxsize=2)
def _discover(with_plugins: bool) -> tuple[dict[str, Quantizer], dict[str, BrokenPluginInfo]]:
    found = {q.name: q for q in BUILTIN}
    if not with_plugins:
        return found, {}
    loaded, broken = load_entry_points(GROUP, check_quantizer)
    for ep_name, q in loaded.items():
        if q.name in found:
            broken[ep_name] = BrokenPluginInfo(ep_name, entry_point_values(GROUP).get(ep_name, ep_name),
                                               f"another plugin already registered the quantizer name {q.name!r}", GROUP)
            continue
        found[q.name] = q
    return found, broken


def all_quantizers() -> dict[str, Quantizer]:
    """Built-in quantizers and the plugins' that work (broken plugins: ``broken_quantizers``)."""
    return dict(_discover(plugins_enabled())[0])


def broken_quantizers() -> dict[str, BrokenPluginInfo]:
    """``edgemm.quantizers`` entry points that could not be used, with the reason."""
    return dict(_discover(plugins_enabled())[1])


def quantizer_names() -> tuple[str, ...]:
    return tuple(all_quantizers())


def get_quantizer(name: str) -> Quantizer:
    qs, broken = _discover(plugins_enabled())
    if name not in qs:
        if name in broken:
            raise EdgemmError(f"the quantizer {broken[name].line()}")
        raise EdgemmError(f"unknown quantizer {name!r}{close_match_hint(name, qs)}; use one of {', '.join(qs)}")
    return qs[name]


def quantizer_for(backend: Backend, chosen: str | None = None) -> Quantizer:
    """The quantizer for ``backend`` (``chosen`` or the backend's default), checked against what the backend takes."""
    name = chosen or backend.default_quantizer
    if name is None:
        pick = f"--quantizer {backend.name}=NAME" if on_command_line() else f"quantizer={{{backend.name!r}: NAME}}"
        raise EdgemmError(f"backend {backend.name!r} declares no INT8 quantizer; pass {pick} ({', '.join(quantizer_names())}) "
                          f"or drop it from {setting('targets')} for {switch('int8')}")
    q = get_quantizer(name)
    if q.targets is not None and backend.name not in q.targets:
        raise EdgemmError(f"the {q.name} quantizer serves {', '.join(q.targets)}, not {backend.name}; "
                          f"use --quantizer {backend.name}={backend.default_quantizer or 'ort'}")
    if backend.int8_symmetric_only and not q.symmetric_activations:
        raise EdgemmError(f"the {q.name} quantizer makes asymmetric uint8 activations, which {backend.name} rejects "
                          f"(it needs symmetric int8); use --quantizer {backend.name}=trt")
    checker = backend.checked_by
    if not backend.runs(q.produces) and q.produces != "onnx":
        raise EdgemmError(f"the {q.name} quantizer makes {q.produces} files, which {backend.name} does not run; "
                          f"use --quantizer {backend.name}={backend.default_quantizer}")
    if not backend.runs(q.produces) and checker is None and backend.device == "cpu":
        raise EdgemmError(f"backend {backend.name!r} does not run {q.produces} files; choose another quantizer")
    return q
