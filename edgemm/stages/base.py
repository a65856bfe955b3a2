"""The stage contract: a stage is a unit with a name, optional typed options and ``run(ctx)``.

The pipeline is the list of stages a config asks for, run once per graph over one ``StageContext``:
the graph's models and data (``GraphState``), the export's config, the bundle writer and the
bundle-level manifest keys and reports stages add. A stage reads what earlier stages left in the
context and adds its own (artifacts through ``ctx.add_artifact``, files at ``ctx.path``); it never
spells a bundle path itself (``edgemm.layout``). Third-party stages come from the ``edgemm.stages``
entry-point group (see examples/stage_plugin) and run where they say (``after``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import EdgemmError
from ..iospec import IOSpec
from .. import layout


@dataclass
class GraphState:
    """One graph of the model on its way through the stages."""

    name: str
    model: Any  # the user's original nn.Module or torch.export program: accuracy reference and baseline
    spec: IOSpec
    examples: dict  # example feeds (numpy), batch >= 2 on dynamic axes
    args: tuple  # the same as torch tensors in input order
    eval_samples: Any = None  # edgemm.data.datasets.Samples of the evaluation split (this graph's inputs)
    calibration: Any = None  # edgemm.data.calibration.CalibrationSource (int8 only)
    training: Any = None  # edgemm.data.generated.TrainingSplit (pruning and QAT share one read)
    deployed: Any = None  # what the ONNX is exported from: the original, or the pruned copy
    program: Any = None  # the reference torch.export program saved by the reference stage
    pruned: Any = None  # the prune stage's result (PruneResult)
    export_info: dict = field(default_factory=dict)  # what the ONNX export did (nodes, opset, exporter ...)
    reference_metrics: dict | None = None  # top-1 per head of the deployed float model on the evaluation split
    int8_results: list = field(default_factory=list)  # the INT8 results that answer to the budget (QAT's with --qat)
    every_int8: list = field(default_factory=list)  # PTQ and QAT results
    entry: dict = field(default_factory=dict)  # the graph's manifest entry: inputs, outputs, axes, parity
    # the examples are valid model inputs (the user's or a model family's): parity may run on them; None: not said
    valid_examples: bool = False  # examples are the user's (or a family's), not random stand-ins

    @property
    def module(self):
        """The user's model as a callable module (a program's module for a .pt2)."""
        from ..torchutil import is_program

        return self.model.module() if is_program(self.model) else self.model

    @property
    def deployed_module(self):
        from ..torchutil import is_program

        return self.deployed.module() if is_program(self.deployed) else self.deployed


@dataclass
class StageContext:
    """What every stage gets: the config, the bundle writer, the graph being built and bundle-level results."""

    config: Any  # edgemm.pipeline.PipelineConfig
    writer: Any  # edgemm.bundle.BundleWriter
    graph: GraphState
    manifest: dict = field(default_factory=dict)  # bundle-level manifest keys stages add ("pruning", "export", ...)
    reports: dict = field(default_factory=dict)  # report key -> data, written as reports/<key>.json at the end
    notes: list = field(default_factory=list)  # lines printed after the bundle is written
    source: str = ""  # where the model came from (for reports)
    recipe: Any = None  # the recipe the export came from (None from Python)

    def options(self, section: str, default: Any = None) -> Any:
        """The validated options of a section ("quantize", "compile.openvino", "stages.<name>"), else ``default``."""
        return (self.config.options or {}).get(section, default)

    def path(self, rel: str) -> Path:
        """A file inside the bundle being written (folders made)."""
        return self.writer.path(rel)

    def folder(self, name: str) -> str:
        """A folder of this graph in the bundle (a backend's artifact folder, 'onnx', 'data' ...)."""
        return layout.folder(self.graph.name, name)

    def add_artifact(self, artifact, files: list[str] | None = None):
        """List an artifact of this graph (its files hashed); the artifact's ``graph`` is set here."""
        artifact.graph = self.graph.name
        return self.writer.add_artifact(artifact, files)

    def artifacts(self, **match) -> list:
        """This graph's artifacts so far, filtered by attribute values (``format="onnx", precision="fp32"``)."""
        return [a for a in self.writer.artifacts
                if a.graph == self.graph.name and all(getattr(a, k) == v for k, v in match.items())]

    def fp32_onnx(self):
        """The graph's fp32 ONNX artifact (the interchange file every target starts from)."""
        found = [a for a in self.artifacts(format="onnx", precision="fp32") if a.path == layout.onnx_path(self.graph.name)]
        if not found:
            raise EdgemmError("internal: the fp32 ONNX export stage has not run before this stage")
        return found[0]


class Stage(ABC):
    """A step of the export. Subclasses set ``name`` and implement ``run``; ``wanted`` says whether this
    export asks for it (built-in stages read the config; a plugin stage runs when named with ``--stage``
    or in a recipe's ``[stages] enable``). ``options``: a class made with ``edgemm.options`` (the recipe's
    ``[stages.<name>]`` table, ``--option stages.<name>.KEY=VALUE``, ``options={"stages.<name>": ...}``).
    ``after``: the stage it follows (plugin stages; built-ins run in the pipeline's order)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[type | None] = None
    after: ClassVar[str] = "compile"

    def wanted(self, ctx: StageContext) -> bool:
        return self.name in (ctx.config.stages or ())

    @abstractmethod
    def run(self, ctx: StageContext) -> None:
        """Do the stage's work on ``ctx.graph``: add artifacts, files, manifest keys or reports."""
