"""One comparator (Polygraphy's shape): run runners over a data set, then compare with a chosen function.

Verify, the PTQ search, INC and QAT all ask the same two questions of a model: "what does it
output on these samples" and "how close is that to the reference" (parity, the task metric of each
head, agreement). They ask them here. Each head is measured by its task (``edgemm.metrics``):
top-1 on class labels, MAE/RMSE on float targets, cosine/recall@k against reference embeddings.

What a runner returns is checked against the spec before anything compares it: a runner (a plugin's,
or one fed a tampered artifact) that returns fewer outputs, other shapes or non-numeric data is a
parity breach naming the backend (and the plugin), not a crash further down; an exception raised
inside a plugin's runner is reported as that plugin's (``UserCodeError``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from . import metrics
from .backends.base import Runner, RunnerOptions
from .backends.registry import get_backend, plugin_origin, reference_backend
from .errors import EdgemmError, ParityError, UserCodeError, one_line
from .iospec import IOSpec
from .torchutil import is_program

Outputs = dict[str, np.ndarray]


def run_batched(runner: Runner, feeds: Mapping[str, np.ndarray], batch: int) -> Outputs:
    """All samples of ``feeds`` through ``runner`` in batches; outputs concatenated per name, checked against its spec."""
    n = len(next(iter(feeds.values())))
    parts: dict[str, list] = {}
    for s in range(0, n, batch):
        chunk = {k: v[s:s + batch] for k, v in feeds.items()}
        out = checked_outputs(runner, chunk, _infer(runner, chunk))
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def runner_origin(runner: Runner) -> str:
    """``backend 'x'``, plus the plugin that provides it: ``backend 'x' (plugin pkg.mod:Backend)``."""
    name = getattr(runner, "backend", "") or ""
    plugin = plugin_origin(name) if name else None
    cls = type(runner)
    if plugin is None and not cls.__module__.startswith("edgemm."):
        plugin = f"{cls.__module__}:{cls.__qualname__}"
    return f"backend {name or cls.__qualname__!r}" + (f" (plugin {plugin})" if plugin else "")


def _is_plugin(runner: Runner) -> bool:
    return "(plugin " in runner_origin(runner)


def _infer(runner: Runner, feeds: Mapping[str, np.ndarray]):
    try:
        return runner.infer(feeds)
    except EdgemmError:
        raise
    except Exception as exc:
        if not _is_plugin(runner):
            raise
        raise UserCodeError(f"the runner of {runner_origin(runner)} raised {type(exc).__name__}: {one_line(exc)[:300]}; "
                            "fix or uninstall that plugin (traceback with -v)") from exc


def checked_outputs(runner: Runner, feeds: Mapping[str, np.ndarray], out) -> Outputs:
    """``out`` (what ``runner`` returned for ``feeds``) as arrays, or a ParityError naming what does not match the spec."""
    spec = runner.spec
    who = runner_origin(runner)
    fix = "fix or uninstall that plugin" if "(plugin " in who else "re-export the bundle (the artifact does not match it)"

    def breach(what: str) -> ParityError:
        return ParityError(f"parity breach: {who} {what}; {fix}")

    names = spec.output_names
    if not isinstance(out, Mapping):
        raise breach(f"returned a {type(out).__name__}, not outputs by name")
    missing = [n for n in names if n not in out]
    if missing:
        raise breach(f"returned {len([n for n in names if n in out])} of the {len(names)} outputs "
                     f"({', '.join(names)}): no {', '.join(map(repr, missing))}")
    sizes = {}  # named axis -> size in the feeds (the batch)
    for t in spec.inputs:
        for axis, axis_name in t.dynamic_axes.items():
            if t.name in feeds:
                sizes.setdefault(axis_name, np.shape(feeds[t.name])[axis])
    result = {}
    for t in spec.outputs:
        try:
            a = np.asarray(out[t.name])
        except Exception as exc:  # noqa: BLE001 - whatever the runner handed back
            raise breach(f"returned output {t.name!r} that is not an array ({type(exc).__name__})") from exc
        if a.dtype.kind not in "biuf":
            raise breach(f"returned output {t.name!r} as {a.dtype} data, expected {t.dtype}")
        if t.shape:
            want = [d if isinstance(d, int) else sizes.get(d) for d in t.shape]
            if a.ndim != len(want) or any(w is not None and g != w for g, w in zip(a.shape, want)):
                shown = [w if w is not None else d for w, d in zip(want, t.shape)]
                raise breach(f"returned output {t.name!r} with shape {list(a.shape)}, expected {shown}")
        result[t.name] = a
    return result


class Comparator:
    """Samples (feeds, optional labels) that runners are run over and compared on."""

    def __init__(self, spec: IOSpec, feeds: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray] | None = None,
                 batch: int = 32, source: str | None = None):
        self.spec = spec
        self.source = source
        self.feeds = dict(feeds)
        self.labels = dict(labels or {})
        self.batch = batch
        self.tasks = metrics.head_tasks(spec.outputs, self.labels)  # output name -> task

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
        """Top-1 per classification head with labels."""
        return metrics.top1(outputs, {h: y for h, y in self.labels.items() if self.tasks.get(h) == "classification"})

    def scores(self, outputs: Outputs, reference: Outputs | None = None) -> dict[str, dict[str, float]]:
        """Every task metric of every head that can be measured here: classification and regression heads on their
        labels, embedding heads against ``reference`` (the fp32 outputs of the same samples). Raw heads: none."""
        out = {}
        for name in self.spec.output_names:
            if name not in outputs:
                continue
            got = metrics.head_scores(self.tasks.get(name, "raw"), outputs[name], self.labels.get(name),
                                      reference.get(name) if reference is not None else None)
            if got is not None:
                out[name] = got
        return out

    def task_metrics(self, outputs: Outputs, reference: Outputs | None = None) -> dict[str, float]:
        """The budgeted metric per measured head (``metrics.PRIMARY``: top1, mae, recall@1)."""
        return {h: s[metrics.PRIMARY[self.tasks[h]]] for h, s in self.scores(outputs, reference).items()}

    def parity(self, reference: Outputs, outputs: Outputs) -> dict[str, dict[str, float]]:
        return {name: metrics.parity(reference[name], outputs[name]) for name in self.spec.output_names}

    def agreement(self, reference: Outputs, outputs: Outputs, classification_only: bool = False) -> dict[str, float]:
        """Same predicted class (argmax) as ``reference``, per classification head; without one, per raw head (a
        proxy for outputs of unknown meaning; ``classification_only`` leaves it out). Never for regression or
        embedding heads, where an argmax means nothing."""
        heads = [h for h, task in self.tasks.items() if task == "classification"]
        if not heads and not classification_only:
            heads = [h for h, task in self.tasks.items() if task == "raw"]
        return metrics.agreement(reference, outputs, heads)

    def evaluate(self, backend: str, path: Path, options: RunnerOptions = RunnerOptions(),
                 reference: Outputs | None = None) -> dict[str, float]:
        """The task metric per measured head of the artifact at ``path`` (embeddings against ``reference``)."""
        return self.task_metrics(self.run_artifact(backend, path, options), reference)


def nonfinite_breach(ref, out) -> str | None:
    """Why ``out`` (an artifact's output) cannot match ``ref``: non-finite values the reference does not have.

    Verify must treat this as a parity breach: an all-inf output has a NaN cosine, and ``nan < floor``
    is False, so a plain threshold check passes it.
    """
    a, b = np.asarray(ref), np.asarray(out)
    bad_out = ~np.isfinite(b) if b.dtype.kind in "fc" else np.zeros(b.shape, bool)
    bad_ref = ~np.isfinite(a) if a.dtype.kind in "fc" else np.zeros(a.shape, bool)
    if a.shape == b.shape:
        extra = bad_out & ~bad_ref
    else:
        extra = bad_out
    n = int(extra.sum())
    if n:
        return f"{n} of {b.size} values are inf/NaN where the reference is finite"
    return None
