"""``[compile.onnxruntime]``: how ``edgemm compile --target onnxruntime`` (and export) builds the offline-optimized model."""
from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from ...options import Options, option, options

# onnxruntime.GraphOptimizationLevel member of each level name
LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


@options("compile.onnxruntime")
class OnnxRuntimeOptions(Options):
    optimization_level: Literal["basic", "extended", "all"] = option(
        "extended", help="graph optimizations baked into the compiled model: basic, extended (fusions; portable across x86 "
                         "CPUs) or all (adds layout transforms for this machine's CPU: run it only where it was compiled)")
    free_dimensions: dict[str, int] = option(
        {}, metavar="AXIS=N,...", help="fix named dynamic axes in the compiled model (ONNX Runtime free-dimension "
                                       "overrides), e.g. batch=1: a fixed-shape model for deployment that runs only those sizes")

    @field_validator("free_dimensions")
    @classmethod
    def _sizes(cls, value: dict[str, int]) -> dict[str, int]:
        for axis, size in value.items():
            if not axis.strip() or size < 1:
                raise ValueError(f"each axis needs a name and a size >= 1 (got {axis!r} = {size}), e.g. batch=1")
        return value
