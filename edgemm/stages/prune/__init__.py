"""The pruning stage: an ``nn.Module`` -> a physically smaller ``nn.Module`` with the same IOSpec.

``prune_model(model, spec, cfg, train, evaluation)`` deep-copies the model, finds its modality
branches (modules that depend on one input only; the rest is ``fusion``), removes channels /
MLP widths / attention heads with torch-pruning's DepGraph iteratively (prune step -> fine-tune
with distillation from the unpruned model on the training split), optionally applies 2:4
sparsity, and returns a :class:`PruneResult` whose ``report`` feeds :func:`pruning_report`.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ...lazy import lazy_import
from ...data.datasets import Samples
from ...errors import EdgemmError, on_command_line
from ...iospec import IOSpec
from .branches import describe, example_args, module_branches
from .config import ALL, FUSION, PruneConfig, parse_prune
from .finetune import Trainer, evaluate
from .report import STAGES, pruning_report
from .sparsity import apply_2_4, check_keep, is_2_4
from .structured import StructuredPruner, check_same_io, count, output_shapes, run_checked

__all__ = ["PruneConfig", "PruneResult", "PruneBudgetNotMet", "check_budget", "parse_prune", "prune_model", "pruning_report", "model_branches", "is_2_4", "STAGES", "FUSION", "ALL"]

DEFAULT_EPOCHS = 40  # at most; avnet 50 %, 1,200 training pairs (train.npz): digit 0.963 -> 0.948-0.958 (~13 s/epoch, 1 thread)
DEFAULT_SAMPLES = 144_000  # ... and at most this many samples seen: 15 epochs of avnet's 9,600 rendered pairs
# (digit 0.958-0.965, benchmarks/results/prune-accuracy-2026-12-03.json); 80 epochs of 1,200 gained nothing.


def default_epochs(samples: int) -> int:
    """The fine-tune's default length: 40 epochs, fewer on a large split (at most 144,000 samples seen)."""
    return max(1, min(DEFAULT_EPOCHS, round(DEFAULT_SAMPLES / max(1, samples))))


@dataclass
class PruneResult:
    module: Any  # the pruned nn.Module (eval mode)
    config: PruneConfig
    report: dict  # pruning_report() dict without size/latency (the pipeline adds those)
    sparse_layers: list[str] = field(default_factory=list)  # 2:4 layers (manifest: TensorRT sparse weights)


def _check_model(model) -> None:
    torch = lazy_import("torch")
    if isinstance(model, torch.export.ExportedProgram):
        raise EdgemmError(
            "a torch.export program (.pt2) cannot be pruned: its graph is frozen; pass the nn.Module instead "
            "(a recipe [model] factory, or edgemm.export(module, ...) from Python)"
        )
    if not isinstance(model, torch.nn.Module):
        raise EdgemmError(f"cannot prune a {type(model).__name__}; pass a torch.nn.Module")


def model_branches(model, spec: IOSpec) -> dict[str, list[str]]:
    """Branch name (input name or ``fusion``) -> top-level modules of that branch."""
    _check_model(model)
    return describe(module_branches(model, spec), spec.input_names)


def _split(total: float | int | None, steps: int) -> list:
    if total is None:
        return [None] * steps
    if isinstance(total, int):
        return [total // steps + (1 if i < total % steps else 0) for i in range(steps)]
    return [total / steps] * steps


def prune_model(model, spec: IOSpec, cfg: PruneConfig | float | str | dict, train: Samples | None = None,
                evaluation: Samples | None = None, progress: Callable[[str], None] = print) -> PruneResult:
    """Prune a copy of ``model`` (never the caller's) and fine-tune it on ``train`` (never ``evaluation``)."""
    torch = lazy_import("torch")
    _check_model(model)
    cfg = cfg if isinstance(cfg, PruneConfig) else parse_prune(cfg)
    cfg.check_branches(spec.input_names)
    if cfg.criterion == "taylor" and cfg.structured and (train is None or len(train) == 0):
        if on_command_line():
            data, other = "[data] training / --calib", "--prune-criterion magnitude"
        else:
            data, other = "training= / calibration=", "prune_options={'criterion': 'magnitude'}"
        raise EdgemmError(f"the taylor criterion needs a training split (gradients); give {data}, or use {other}")
    torch.manual_seed(cfg.seed)
    teacher = model
    was_training = teacher.training
    teacher.eval()
    try:
        return _prune(teacher, spec, cfg, train, evaluation, progress)
    finally:
        teacher.train(was_training)


def _prune(teacher, spec, cfg: PruneConfig, train, evaluation, progress) -> PruneResult:
    student = copy.deepcopy(teacher).eval()
    feeds = train.feeds if train is not None and len(train) >= 2 else None
    args = example_args(spec, batch=2, feeds=feeds)
    want = output_shapes(run_checked(student, args))
    branches = module_branches(student, spec, feeds)
    before = {**count(student, args), "top1": evaluate(teacher, spec, evaluation)}
    steps = cfg.iterative_steps if cfg.structured else 1
    n_train = len(train) if train is not None else 0
    epochs = cfg.epochs if cfg.epochs is not None else (None if cfg.finetune_minutes is not None else default_epochs(n_train))
    if epochs is None:  # time budget only: epochs are cut by the deadline
        epochs = 10_000
    per_step = _split(int(epochs), steps)
    if train is None or len(train) == 0:
        if epochs and cfg.epochs != 0 and cfg.finetune_minutes != 0:
            progress("prune: no training split given: pruning without fine-tuning")
        per_step = [0] * steps
    deadline = time.monotonic() + 60 * cfg.finetune_minutes if cfg.finetune_minutes is not None else None
    if cfg.finetune_minutes == 0:
        per_step = [0] * steps
    pruner = StructuredPruner(student, spec, cfg, args, branches) if cfg.structured else None  # checks keep against channel groups
    if cfg.sparsity == "2:4" and pruner is None:
        check_keep(student, cfg.keep)  # 2:4 alone: keep names the layers that stay dense
    outputs = describe(branches, spec.input_names)  # where each modality branch meets the fusion: feature distillation
    features = [n for b in spec.input_names for n in outputs.get(b, [])]
    trainer = Trainer(student, teacher, spec, train, cfg, features=features) if train is not None and len(train) else None
    progress(f"prune: {before['params']:,} params, {before['flops'] / 1e6:.1f} MFLOP; "
             + ", ".join(f"{b}={cfg.ratio_for(b):g}" for b in (*spec.input_names, FUSION)) + (f", sparsity {cfg.sparsity}" if cfg.sparsity else ""))
    history, after_pruning, masks, t0 = [], None, {}, time.monotonic()
    for s in range(steps):
        label = f"prune step {s + 1}/{steps}"
        if pruner is not None:
            if cfg.criterion == "taylor" and trainer is not None:
                trainer.gradients()
            pruner.step()
            student.zero_grad(set_to_none=True)
        if s == steps - 1 and cfg.sparsity == "2:4":
            masks = apply_2_4(student, cfg.keep)  # layers under a keep name stay dense
            if trainer is not None:
                trainer.masks = masks
        check_same_io(student, spec, args, want)
        now = {**count(student, args), "top1": evaluate(student, spec, evaluation)}
        if s == 0:
            after_pruning = now  # the first cut, before any fine-tuning
        progress(f"{label}: {now['params']:,} params, {now['flops'] / 1e6:.1f} MFLOP" + "".join(f" {h} {v:.3f}" for h, v in now["top1"].items()))
        if trainer is not None and per_step[s]:
            for h in trainer.run(per_step[s], deadline, evaluation, label, progress):
                history.append({"step": s + 1, **h})
    if steps > 1 and pruner is not None:  # "after pruning" = the full ratio without fine-tuning, measured on a fresh copy
        after_pruning = _one_shot(teacher, spec, cfg, args, branches, evaluation, trainer)
    student.eval()
    final = {**count(student, args), "top1": evaluate(student, spec, evaluation)}
    report = pruning_report(
        request={**{k: v for k, v in asdict(cfg).items() if k in ("criterion", "heads", "sparsity", "iterative_steps", "epochs", "finetune_minutes", "distill_temperature", "lr",
                                                                     "mixup", "shift", "bn_recalibrate", "seed")},
                 "ratios": dict(cfg.ratios), "keep": list(cfg.keep)},
        params=(before["params"], final["params"]), flops=(before["flops"], final["flops"]),
        accuracy={"before": before["top1"], "after_pruning": after_pruning["top1"] if after_pruning else {}, "after_finetune": final["top1"] if history else {}},
        branches=describe(branches, spec.input_names), groups=pruner.summary() if pruner else [],
        finetune={"split": getattr(train, "source", None), "samples": len(train) if train is not None else 0, "epochs": len(history),
                  "seconds": round(time.monotonic() - t0, 2), "history": history},
        sparsity={"pattern": cfg.sparsity, "layers": sorted(masks), "cpu_speedup": False} if cfg.sparsity else None,
        max_drop=cfg.max_drop if cfg.structured else None,
    )
    progress(f"prune: done: {final['params']:,} params ({final['params'] / before['params']:.0%}), {final['flops'] / 1e6:.1f} MFLOP ({final['flops'] / before['flops']:.0%})"
             + "".join(f" {h} {before['top1'][h]:.3f}->{v:.3f}" for h, v in final["top1"].items()))
    return PruneResult(student, cfg, report, sorted(masks))


class PruneBudgetNotMet(EdgemmError):
    """Pruning lost more top-1 on some head than its budget allows; the pruned model was kept."""


def check_budget(report: dict, where: str) -> None:
    """Raise :class:`PruneBudgetNotMet` (one line: the head, the drop, what to do) when pruning missed its budget."""
    budget = report.get("budget") or {}
    if budget.get("met") is not False:
        return
    missed = {h: d for h, d in budget["drop"].items() if d > budget["max_drop"]}
    heads = ", ".join(f"{h} {d * 100:.2f}" for h, d in missed.items())
    raise PruneBudgetNotMet(
        f"pruning lost more than its budget of {budget['max_drop'] * 100:.2f} top-1 points ({heads} points, {budget['stage']}); "
        f"{where} holds the pruned model (see reports/pruning.json); fine-tune longer (--finetune-epochs), "
        f"give a larger [data] training split, lower the ratio, or raise [prune] max_drop"
    )


def _one_shot(teacher, spec, cfg, args, branches, evaluation, trainer) -> dict:
    from dataclasses import replace

    m = copy.deepcopy(teacher).eval()
    one = replace(cfg, iterative_steps=1)
    pruner = StructuredPruner(m, spec, one, args, branches)
    if cfg.criterion == "taylor":
        trainer.gradients(m)
    pruner.step()
    return {"top1": evaluate(m, spec, evaluation)}
