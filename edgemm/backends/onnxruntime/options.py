"""``[compile.onnxruntime]``: how ``edgemm compile --target onnxruntime`` (and export) builds the offline-optimized model."""
from __future__ import annotations

from typing import Literal

from ...options import Options, option, options

# onnxruntime.GraphOptimizationLevel member of each level name
LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


@options("compile.onnxruntime")
class OnnxRuntimeOptions(Options):
    optimization_level: Literal["basic", "extended", "all"] = option(
        "extended", help="graph optimizations baked into the compiled model: basic, extended (fusions; portable across x86 "
                         "CPUs) or all (adds layout transforms for this machine's CPU: run it only where it was compiled)")
