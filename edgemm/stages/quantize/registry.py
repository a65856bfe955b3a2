"""The quantizer registry: what each INT8 quantizer is (name, targets served, what it produces).

Built-ins are declared here; other packages add theirs under the ``edgemm.quantizers`` entry-point
group (an instance of ``Quantizer``). The recipe, the CLI and the pipeline all read this one set.

``works_on`` says what the PTQ algorithm hands the quantizer: ``onnx-qdq`` (ONNX Runtime's Q/DQ
insertion on the fp32 ONNX with ``scheme``), ``openvino`` (NNCF on the OpenVINO model) or
``torch`` (the user's nn.Module: INC's PT2E flow with its own accuracy-driven search).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ...backends.base import Backend
from ...errors import EdgemmError, close_match_hint
from .qdq import SCHEMES, QdqScheme


@dataclass(frozen=True)
class Quantizer:
    name: str
    description: str
    produces: str  # artifact format: "onnx" (Q/DQ) | "openvino-ir"
    works_on: str  # "onnx-qdq" | "openvino" | "torch"
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
)


@lru_cache(maxsize=1)
def all_quantizers() -> dict[str, Quantizer]:
    found = {q.name: q for q in BUILTIN}
    from importlib.metadata import entry_points

    for ep in entry_points(group="edgemm.quantizers"):
        try:
            q = ep.load()
        except Exception as exc:  # a broken third-party package: name it, keep the cause for -v
            raise EdgemmError(f"the quantizer plugin {ep.name} ({ep.value}) fails to import; fix or uninstall it") from exc
        if not isinstance(q, Quantizer) or q.works_on != "onnx-qdq" or q.scheme is None:
            raise EdgemmError(f"entry point {ep.name} ({ep.value}) is not an edgemm Quantizer with a Q/DQ scheme; fix or uninstall it")
        found.setdefault(q.name, q)
    return found


def quantizer_names() -> tuple[str, ...]:
    return tuple(all_quantizers())


def get_quantizer(name: str) -> Quantizer:
    qs = all_quantizers()
    if name not in qs:
        raise EdgemmError(f"unknown quantizer {name!r}{close_match_hint(name, qs)}; use one of {', '.join(qs)}")
    return qs[name]


def quantizer_for(backend: Backend, chosen: str | None = None) -> Quantizer:
    """The quantizer for ``backend`` (``chosen`` or the backend's default), checked against what the backend takes."""
    name = chosen or backend.default_quantizer
    if name is None:
        raise EdgemmError(f"backend {backend.name!r} declares no INT8 quantizer; pass --quantizer {backend.name}=NAME "
                          f"({', '.join(quantizer_names())}) or drop it from --target for --int8")
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
