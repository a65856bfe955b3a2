"""An edgemm stage from outside edgemm: the fp32 ONNX converted to ONNX Runtime's ORT format.

The ORT format is the flatbuffer model ONNX Runtime's mobile and minimal builds load (they cannot
parse ONNX protobufs). The stage runs after ``compile`` for every graph, writes ``ort/model.fp32.ort``
(``edgemm.layout`` names the file) and lists it as an onnxruntime artifact of format ``ort``, so
``edgemm verify``, ``edgemm bench`` and ``edgemm.load`` treat it like any other artifact.

Options (``[stages.ort-format]`` in a recipe, ``--option stages.ort-format.optimization=extended``,
or ``options={"stages.ort-format": {...}}`` from Python) come from ``OrtFormatOptions``.
"""
from __future__ import annotations

from typing import Literal

from edgemm import layout
from edgemm.backends.base import version_of
from edgemm.bundle import Artifact
from edgemm.errors import EdgemmError
from edgemm.options import Options, option, options
from edgemm.stages.base import Stage, StageContext

# onnxruntime.GraphOptimizationLevel member per name. "basic" keeps only hardware-independent rewrites, which
# is what a model for another device (a phone, a Raspberry Pi) needs; "extended" adds fusions of this build.
LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED"}


@options("stages.ort-format")
class OrtFormatOptions(Options):
    optimization: Literal["basic", "extended"] = option(
        "basic", help="graph optimizations saved into the ORT model: basic (portable to any device) or extended")


class OrtFormatStage(Stage):
    name = "ort-format"
    description = "convert the fp32 ONNX to ONNX Runtime's ORT format (mobile and minimal builds)"
    options = OrtFormatOptions
    after = "compile"

    def run(self, ctx: StageContext) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EdgemmError("the ort-format stage needs onnxruntime: pip install onnxruntime") from exc
        opts = ctx.options(f"stages.{self.name}") or OrtFormatOptions()
        source = ctx.fp32_onnx()
        rel = layout.artifact_path(ctx.graph.name, "ort", "fp32", suffix=".ort")
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[opts.optimization])
        so.optimized_model_filepath = str(ctx.path(rel))
        so.add_session_config_entry("session.save_model_format", "ORT")
        so.log_severity_level = 3
        ort.InferenceSession(str(ctx.path(source.path)), so, providers=["CPUExecutionProvider"])  # writes the .ort file
        ctx.add_artifact(Artifact(rel, "ort", "fp32", "onnxruntime", "onnxruntime",
                                  toolchain={"onnxruntime": version_of("onnxruntime") or "?"},
                                  extra={"source": source.path, "optimization": opts.optimization, "stage": self.name}))
