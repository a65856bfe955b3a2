"""What a TensorRT build does, decided from plain data: the TensorRT version, the precision and the options.

TensorRT 10 and 11 differ in how a network gets its precision (TensorRT 10.x -> 11.x migration guide,
"Strongly Typed Networks Are Now Required"; Python API reference, "Removed Python APIs and Replacements"):

- TensorRT 10 is weakly typed by default: the fp32 ONNX is built with ``BuilderFlag.FP16`` for fp16 (the
  precision policy's layers pinned to fp32 with ``layer.precision`` under ``PREFER_PRECISION_CONSTRAINTS``),
  and the Q/DQ ONNX with ``BuilderFlag.INT8`` (explicit quantization).
- TensorRT 11 removed ``BuilderFlag.FP16/INT8/OBEY_PRECISION_CONSTRAINTS/PREFER_PRECISION_CONSTRAINTS`` and
  implicit INT8 calibration; every network is strongly typed (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
  is deprecated and ignored). fp16 comes from an fp16 graph (the guide points at ModelOpt AutoCast; edgemm's
  own cast is :func:`edgemm.backends.tensorrt.fp16.fp16_cast`), int8 from the Q/DQ graph.

``TF32`` is on by default in both (IBuilderConfig docs, ``BuilderFlag.TF32``): an fp32 artifact must compute in
fp32, so the plan clears it unless asked. DLA takes fp16 and int8 networks only ("Working with DLA"), and
TensorRT 11.0-11.3 have no DLA at all (11.3 "Building and Launching the Loadable": "TensorRT 10.7 was the last
release that supported DLA. DLA was also not supported in TensorRT 11.0, 11.1, or 11.2").
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ...errors import BackendUnavailable, EdgemmError, UnsupportedFeature

PRECISIONS = ("fp32", "fp16", "int8")
SUPPORTED_MAJORS = (10, 11)


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT version as (major, minor, patch); ``str()`` gives ``10.3.0``."""

    major: int
    minor: int = 0
    patch: int = 0

    @classmethod
    def parse(cls, text: object) -> "TrtVersion":
        """``tensorrt.__version__`` (``10.3.0``, ``10.13.2.6``, ``11.0.0.post1``) -> TrtVersion."""
        m = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
        if not m:
            raise EdgemmError(f"cannot read a TensorRT version from {text!r}; expected something like 10.3.0")
        return cls(int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def check_supported(version: TrtVersion) -> None:
    """edgemm builds with TensorRT 10 (JetPack 6) and 11 (discrete GPUs); a later major is built with 11's rules."""
    if version.major < SUPPORTED_MAJORS[0]:
        raise BackendUnavailable(f"TensorRT {version} is too old: edgemm builds engines with TensorRT 10 or 11 (tensor-name I/O, "
                                 "explicit quantization); install it with: pip install 'tensorrt>=10' (or JetPack 6 on Jetson)")


@dataclass(frozen=True)
class BuildPlan:
    """The settings of one engine build, as names of TensorRT enums (``BuilderFlag.<name>`` ...)."""

    version: str
    precision: str
    source: str  # the ONNX the network is parsed from: "fp32" | "fp16-cast" (edgemm's fp16 graph) | "qdq"
    strongly_typed: bool
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag names
    set_flags: tuple[str, ...]  # BuilderFlag names to set
    clear_flags: tuple[str, ...]  # BuilderFlag names to clear (on by default)
    pin_fp32_layers: bool  # weakly typed fp16: the precision policy's layers get layer.precision = fp32
    dla_core: int | None = None
    gpu_fallback: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def build_plan(version: TrtVersion | str, precision: str, *, source_precision: str = "fp32", dla_core: int | None = None,
               gpu_fallback: bool = True, sparse_weights: bool = False, tf32: bool = False) -> BuildPlan:
    """The build settings for ``precision`` from a ``source_precision`` ONNX on TensorRT ``version``."""
    v = version if isinstance(version, TrtVersion) else TrtVersion.parse(version)
    check_supported(v)
    if precision not in PRECISIONS:
        raise EdgemmError(f"TensorRT has no precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "int8" and source_precision != "int8":
        raise EdgemmError("TensorRT builds int8 engines from the bundle's Q/DQ model only (TensorRT 11 removed implicit INT8 "
                          "calibration); export with `edgemm export ... --int8 --target tensorrt`, then compile with --int8")
    if precision != "int8" and source_precision == "int8":
        raise EdgemmError(f"a {precision} engine is built from the fp32 ONNX, not from the int8 Q/DQ model; compile "
                          f"{'with --fp16' if precision == 'fp16' else 'without --int8'} from the bundle's fp32 artifact")
    strongly_typed = v.major >= 11
    if dla_core is not None:
        if precision == "fp32":
            raise UnsupportedFeature("DLA runs fp16 and int8 networks only; compile with --fp16 or --int8 for a DLA core, "
                                     "or leave the DLA core unset for an fp32 GPU engine")
        if v.major == 11 and v.minor < 4:
            raise UnsupportedFeature(f"TensorRT {v} has no DLA support (TensorRT 10 is the DLA release, with JetPack 6); "
                                     "build on TensorRT 10 or leave the DLA core unset")
    set_flags: list[str] = []
    clear_flags: list[str] = []
    if precision == "fp32" and not tf32:
        clear_flags.append("TF32")  # on by default; fp32 artifacts compute in fp32
    if not strongly_typed:
        if precision == "fp16":
            set_flags += ["FP16", "PREFER_PRECISION_CONSTRAINTS"]
        elif precision == "int8":
            set_flags.append("INT8")  # explicit quantization: the Q/DQ nodes set the INT8 layers
    if sparse_weights:
        set_flags.append("SPARSE_WEIGHTS")
    if dla_core is not None and gpu_fallback:
        set_flags.append("GPU_FALLBACK")
    source = {"fp32": "fp32", "int8": "qdq"}.get(precision) or ("fp16-cast" if strongly_typed else "fp32")
    return BuildPlan(version=str(v), precision=precision, source=source, strongly_typed=strongly_typed,
                     # 11.x: strong typing is always on and the flag is ignored, so none is passed
                     network_flags=(), set_flags=tuple(set_flags), clear_flags=tuple(clear_flags),
                     pin_fp32_layers=(precision == "fp16" and not strongly_typed), dla_core=dla_core,
                     gpu_fallback=gpu_fallback)
