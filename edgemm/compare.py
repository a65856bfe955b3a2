"""One comparator (Polygraphy's shape): run runners over a data set, then compare with a chosen function.

Verify, the PTQ search, INC and QAT all ask the same two questions of a model: "what does it
output on these samples" and "how close is that to the reference" (parity, top-1, agreement).
They ask them here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from . import metrics
from .backends.base import Runner, RunnerOptions
from .backends.registry import get_backend, reference_backend
from .iospec import IOSpec
from .torchutil import is_program

Outputs = dict[str, np.ndarray]


def run_batched(runner: Runner, feeds: Mapping[str, np.ndarray], batch: int) -> Outputs:
    """All samples of ``feeds`` through ``runner`` in batches; outputs concatenated per name."""
    n = len(next(iter(feeds.values())))
    parts: dict[str, list] = {}
    for s in range(0, n, batch):
        out = runner.infer({k: v[s:s + batch] for k, v in feeds.items()})
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


class Comparator:
    """Samples (feeds, optional labels) that runners are run over and compared on."""

    def __init__(self, spec: IOSpec, feeds: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray] | None = None,
                 batch: int = 32, source: str | None = None):
        self.spec = spec
        self.source = source
        self.feeds = dict(feeds)
        self.labels = dict(labels or {})
        self.batch = batch

    def __len__(self) -> int:
        return len(next(iter(self.feeds.values())))

    @property
    def labelled(self) -> bool:
        return bool(self.labels)

    def run(self, runner: Runner) -> Outputs:
        return run_batched(runner, self.feeds, self.batch)

    def run_artifact(self, backend: str, path: Path, options: RunnerOptions = RunnerOptions()) -> Outputs:
        """Open a runner for ``path`` on ``backend``, run every sample, close it (also on error)."""
        with get_backend(backend).create_runner(path, self.spec, options) as runner:
            return self.run(runner)

    def run_module(self, module) -> Outputs:
        """A live torch module (the user's model, a fake-quant student, a PT2E model) under the same contract."""
        if is_program(module):
            module = module.module()
        with reference_backend().runner_for_module(module, self.spec) as runner:
            return self.run(runner)

    # comparison functions
    def top1(self, outputs: Outputs) -> dict[str, float]:
        return metrics.top1(outputs, self.labels)

    def parity(self, reference: Outputs, outputs: Outputs) -> dict[str, dict[str, float]]:
        return {name: metrics.parity(reference[name], outputs[name]) for name in self.spec.output_names}

    def agreement(self, reference: Outputs, outputs: Outputs) -> dict[str, float]:
        heads = [t.name for t in self.spec.outputs if t.labels is not None] or self.spec.output_names
        return metrics.agreement(reference, outputs, heads)

    def evaluate(self, backend: str, path: Path, options: RunnerOptions = RunnerOptions()) -> dict[str, float]:
        """Top-1 per labelled head of the artifact at ``path``."""
        return self.top1(self.run_artifact(backend, path, options))
