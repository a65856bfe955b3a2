"""Fine-tuning with distillation from the unpruned model, and per-head top-1 evaluation.

Loss per output: ``w * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - w) * CE(labels)``
for classification outputs (2-D), MSE to the teacher for any other output. Heads without labels in
the training split are distilled only. Runs only on the training split it is given.
"""
from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import numpy as np

from ...lazy import lazy_import
from ...data.datasets import Samples
from ...iospec import IOSpec
from .config import PruneConfig


def _outs(out):
    torch = lazy_import("torch")
    return [out] if isinstance(out, torch.Tensor) else list(out)


def _tensors(samples: Samples, spec: IOSpec):
    torch = lazy_import("torch")
    return [torch.from_numpy(np.ascontiguousarray(samples.feeds[n])) for n in spec.input_names]


def evaluate(model, spec: IOSpec, samples: Samples | None, batch: int = 256) -> dict[str, float]:
    """Top-1 per head that has labels in ``samples`` (fractions in [0, 1])."""
    torch = lazy_import("torch")
    if samples is None or not samples.labels:
        return {}
    was = model.training
    model.eval()
    xs = _tensors(samples, spec)
    correct = {h: 0 for h in samples.labels}
    try:
        with torch.no_grad():
            for s in range(0, len(samples), batch):
                outs = _outs(model(*[x[s:s + batch] for x in xs]))
                for i, o in enumerate(spec.outputs):
                    if o.name in correct and i < len(outs):
                        correct[o.name] += int((outs[i].argmax(-1).numpy() == samples.labels[o.name][s:s + batch]).sum())
    finally:
        model.train(was)
    return {h: c / len(samples) for h, c in correct.items()}


def distill_loss(student_outs, teacher_outs, labels: Sequence, cfg: PruneConfig):
    torch = lazy_import("torch")
    F = torch.nn.functional
    T, w = cfg.distill_temperature, cfg.distill_weight
    total = 0.0
    for s, t, y in zip(student_outs, teacher_outs, labels):
        if s.dim() == 2 and s.is_floating_point():
            kd = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="batchmean", log_target=True) * T * T
            ce = F.cross_entropy(s, y) if y is not None else None
            total = total + (w * kd + (1 - w) * ce if ce is not None else kd)
        else:
            total = total + F.mse_loss(s, t)
    return total


class Trainer:
    """Distillation fine-tune of ``student`` towards ``teacher`` on the training split."""

    def __init__(self, student, teacher, spec: IOSpec, train: Samples, cfg: PruneConfig, masks=None):
        torch = lazy_import("torch")
        self.student, self.teacher, self.spec, self.cfg, self.masks = student, teacher, spec, cfg, masks or {}
        self.xs = _tensors(train, spec)
        self.ys = [torch.from_numpy(train.labels[o.name]) if o.name in train.labels else None for o in spec.outputs]
        self.n = len(train)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        with torch.no_grad():
            teacher.eval()
            self.teacher_outs = [torch.cat(c) for c in zip(*[_outs(teacher(*[x[s:s + 256] for x in self.xs])) for s in range(0, self.n, 256)])]

    def gradients(self, model=None, batches: int = 4) -> None:
        """Accumulate loss gradients on a few batches (for Taylor importance): CE on labels, else teacher argmax."""
        model = self.student if model is None else model
        model.zero_grad()
        model.eval()
        for b, idx in enumerate(self._batches()):
            if b >= batches:
                break
            outs = _outs(model(*[x[idx] for x in self.xs]))
            loss = 0.0
            for o, t, y in zip(outs, self.teacher_outs, self.ys):
                if o.dim() == 2:
                    target = y[idx] if y is not None else t[idx].argmax(-1)
                    loss = loss + lazy_import("torch").nn.functional.cross_entropy(o, target)
            loss.backward()

    def _batches(self):
        torch = lazy_import("torch")
        perm = torch.randperm(self.n, generator=self.gen)
        bs = self.cfg.batch_size
        for s in range(0, self.n - (bs // 2 if self.n > bs else 0), bs):  # drop a tiny last batch (BatchNorm)
            yield perm[s:s + bs]

    def _recombined_loss(self, idx):
        """Distillation on new input combinations (input k of sample i with input j of sample p(i)):
        the teacher labels them, so the small training split yields many more distinct examples."""
        torch = lazy_import("torch")
        xs = [self.xs[0][idx]] + [x[idx[torch.randperm(len(idx), generator=self.gen)]] for x in self.xs[1:]]
        with torch.no_grad():
            t = _outs(self.teacher(*xs))
        return distill_loss(_outs(self.student(*xs)), t, [None] * len(t), self.cfg)

    def epoch(self, optimizer, deadline: float | None) -> float:
        from .sparsity import reapply

        self.student.train()
        losses = []
        for idx in self._batches():
            if deadline is not None and time.monotonic() > deadline:
                break
            outs = _outs(self.student(*[x[idx] for x in self.xs]))
            loss = distill_loss(outs, [t[idx] for t in self.teacher_outs], [y[idx] if y is not None else None for y in self.ys], self.cfg)
            if self.cfg.recombine and len(self.xs) > 1:
                loss = loss + self._recombined_loss(idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if self.masks:
                reapply(self.student, self.masks)
            losses.append(float(loss.detach()))
        self.student.eval()
        return float(np.mean(losses)) if losses else float("nan")

    def run(self, epochs: int, deadline: float | None, evaluation: Samples | None, label: str,
            progress: Callable[[str], None]) -> list[dict]:
        torch = lazy_import("torch")
        history = []
        if epochs <= 0:
            return history
        optimizer = torch.optim.AdamW(self.student.parameters(), lr=self.cfg.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
        for e in range(epochs):
            if deadline is not None and time.monotonic() > deadline:
                progress(f"{label}: fine-tune budget spent after {e} epoch(s)")
                break
            loss = self.epoch(optimizer, deadline)
            sched.step()
            acc = evaluate(self.student, self.spec, evaluation)
            history.append({"epoch": e + 1, "loss": loss, "top1": acc})
            progress(f"{label} epoch {e + 1}/{epochs} loss {loss:.4f}" + "".join(f" {h} {v:.3f}" for h, v in acc.items()))
        return history
