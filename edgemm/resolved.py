"""What the pipeline exports: the user's model resolved into named graphs, each a module with its IOSpec."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .iospec import IOSpec
from .torchutil import is_program


@dataclass
class GraphModel:
    """One graph of the user's model: the module (or program), its IOSpec and the user's example inputs."""

    model: Any  # nn.Module or torch.export.ExportedProgram
    spec: IOSpec
    example_inputs: Mapping[str, np.ndarray] | None = None


@dataclass
class ResolvedModel:
    """The user's model (one graph, or several: ``{"image": m1, "text": m2}``) and where it came from."""

    graphs: dict[str, GraphModel]
    recipe: Any  # edgemm.recipe.Recipe (a synthesized one for models from Python)
    source: str
    sha256: str

    @property
    def model(self):
        """The first graph's model (the only one of a single-graph export)."""
        return next(iter(self.graphs.values())).model

    @property
    def spec(self) -> IOSpec:
        return next(iter(self.graphs.values())).spec

    @property
    def module(self):
        """A callable torch module (a program's module for a .pt2)."""
        return self.model.module() if is_program(self.model) else self.model
