"""``[compile.tensorrt]``: how ``edgemm compile --target tensorrt`` builds engines and how they are run.

Each field names the TensorRT setting it drives (Python API reference: ``IBuilderConfig``,
``IOptimizationProfile``, ``BuilderFlag``); the decisions themselves are pure functions in ``plan.py``,
``profiles.py``, ``onnx_checks.py`` and ``portability.py``.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from ...options import Options, option, options
from .fp16 import DEFAULT_FP32_OPS

_OP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@options("compile.tensorrt")
class TensorRTOptions(Options):
    profiles: int = option(
        1, ge=1, le=16, help="optimization profiles: each dynamic axis range (the IOSpec's min/opt/max) split into this many "
                             "geometric sub-ranges, each with kernels tuned for its own sizes")
    undeclared_axis_max: int = option(
        64, ge=1, metavar="N", help="largest size of a dynamic axis the IOSpec gives no range (give the axis a range to "
                                    "go beyond; TensorRT reserves device memory for the largest shapes)")
    optimization_level: int = option(
        3, ge=0, le=5, help="builder optimization level (TensorRT's default 3; 4-5 search longer for faster kernels)")
    workspace_mb: int | None = option(
        None, ge=1, metavar="MIB", help="workspace memory pool limit in MiB (default: TensorRT's, the device's memory)")
    timing_cache: bool = option(
        True, help="reuse the bundle's timing caches of this GPU and TensorRT version, and save the new one beside the engine")
    dla_core: int | None = option(
        None, ge=0, metavar="N", help="build for this DLA core (Jetson; fp16 or int8); layers DLA cannot run fall back to the GPU "
                                      "and are reported")
    gpu_fallback: bool = option(
        True, help="with a DLA core: run the layers DLA cannot run on the GPU (off: refuse such a network)")
    sparse_weights: Literal["auto", "on", "off"] = option(
        "auto", help="2:4 sparse weights (BuilderFlag.SPARSE_WEIGHTS): auto turns them on where the weights hold the 2:4 "
                     "pattern (export --prune 2:4)")
    tf32: bool = option(
        False, help="let fp32 engines use TF32 tensor-core math (faster, about 1e-3 relative error); off: fp32 computes in fp32")
    fp32_ops: tuple[str, ...] = option(
        DEFAULT_FP32_OPS, metavar="OP,...", help="fp16 engines: ONNX op types kept in fp32 (normalisation statistics, exp/log/pow)")
    fp32_nodes: tuple[str, ...] = option(
        (), metavar="NODE,...", help="fp16 engines: ONNX node names kept in fp32 (the precision policy's float parts)")
    rebuild: bool = option(
        True, flag="--rebuild", help="rebuild an engine from its source ONNX when it does not match this GPU or TensorRT "
                                     "version (--no-rebuild: refuse in one line)")
    cuda_graph: bool = option(
        False, help="run the engine through a captured CUDA graph (captured again when shapes or buffers change)")

    @field_validator("fp32_ops")
    @classmethod
    def _op_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _OP_NAME.match(v)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an ONNX op type name (like LayerNormalization)")
        return value
