"""Fine-tuning with distillation from the unpruned model, and per-head top-1 evaluation.

Loss per output: ``w * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - w) * CE(labels)``
for classification outputs (2-D), MSE to the teacher for any other output. Heads without labels in
the training split are distilled only. Runs only on the training split it is given.

Feature distillation: where a modality branch hands its features to the fusion (the branch's top-level
modules), the student's features are pulled towards the teacher's (MSE normalised by the teacher
feature's variance, weight ``cfg.feature_weight``): every sample then gives tokens x width targets
instead of one label per head. Where pruning narrowed that width, a linear adapter (FitNets-style
hint, trained along, dropped afterwards) maps the student's width to the teacher's.

``cfg.mixup``: function matching on blends of two training samples (teacher outputs and features
as targets), which spreads a small training split over the space between its samples.
``cfg.shift``: every batch translated at random (image inputs in space, audio inputs in time; the
teacher's outputs and features on the shifted inputs as targets; labels stay valid).
``cfg.bn_recalibrate``: after the last epoch, BatchNorm running statistics are re-estimated on the
clean training inputs (training updated them on blended and shifted batches too).

Under a launcher (``torchrun``, edgemm.distributed) the same loop runs on every rank, as DistributedSampler
does it: every rank draws the same random numbers (one seed for all), so the global batches, shifts, blends and
re-pairings are the one-process run's; each rank takes its strided part of every global batch (disjoint, every
sample of an epoch on one rank) through DistributedDataParallel, whose averaged gradients are then the global
batch's. What still differs from one process: BatchNorm sees each rank's part of the batch, and float sums run
in another order. Losses are averaged over the ranks, the deadline is one decision for all, Taylor gradients and
re-estimated BatchNorm statistics are averaged, and rank 0's final state is broadcast, so that every rank holds
the same model (and prunes the same channels).
"""
from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import numpy as np

from ...lazy import lazy_import
from ...data.datasets import Samples
from ...distributed import current as distributed_session
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
    device = _device_of(model)
    correct = {h: 0 for h in samples.labels}
    try:
        with torch.no_grad():
            for s in range(0, len(samples), batch):
                outs = _outs(model(*[x[s:s + batch].to(device) for x in xs]))
                for i, o in enumerate(spec.outputs):
                    if o.name in correct and i < len(outs):
                        correct[o.name] += int((outs[i].argmax(-1).cpu().numpy() == samples.labels[o.name][s:s + batch]).sum())
    finally:
        model.train(was)
    return {h: c / len(samples) for h, c in correct.items()}


def _device_of(model):
    """The device ``model``'s parameters live on (CPU for a model without parameters)."""
    torch = lazy_import("torch")
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _joint(student, adapters: Mapping):
    """The student and its width adapters as one module (what DistributedDataParallel keeps in step: the adapters'
    gradients are averaged over the ranks like the student's); its forward is the student's."""
    torch = lazy_import("torch")

    class StudentWithAdapters(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.student = student
            self.adapters = torch.nn.ModuleList([linear for _, linear in adapters.values()])

        def forward(self, *xs):
            return self.student(*xs)

    return StudentWithAdapters()


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


class _Features:
    """Forward hooks that keep the output of named modules (the branch outputs) of the last forward pass."""

    def __init__(self, model, names: Sequence[str]):
        self.out: dict[str, object] = {}
        self.hooks = [model.get_submodule(n).register_forward_hook(self._grab(n)) for n in names]

    def _grab(self, name):
        def hook(_m, _i, out):
            self.out[name] = out[0] if isinstance(out, (tuple, list)) else out
        return hook

    def take(self) -> dict:
        out, self.out = self.out, {}
        return out

    def close(self) -> None:
        for h in self.hooks:
            h.remove()


def feature_loss(student: Mapping, teacher: Mapping, adapters: Mapping | None = None):
    """Mean over features of MSE(student, teacher) / var(teacher) (scale-free; 0 when none match in shape).

    ``adapters``: feature name -> (dim, Linear) mapping a pruned student width to the teacher's along
    ``dim`` (FitNets-style hints; trained with the student, never part of the pruned model)."""
    torch = lazy_import("torch")
    F = torch.nn.functional
    losses = []
    for n, s in student.items():
        if n not in teacher or not isinstance(s, torch.Tensor):
            continue
        if adapters and n in adapters:
            dim, linear = adapters[n]
            s = linear(s.movedim(dim, -1)).movedim(-1, dim)
        if s.shape == teacher[n].shape:
            losses.append(F.mse_loss(s, teacher[n]) / (teacher[n].var() + 1e-6))
    return sum(losses) / len(losses) if losses else 0.0


def width_adapters(student: Mapping, teacher: Mapping) -> dict:
    """Feature name -> (dim, Linear(student width, teacher width)) where pruning narrowed one axis."""
    torch = lazy_import("torch")
    out = {}
    for n, s in student.items():
        t = teacher.get(n)
        if not isinstance(s, torch.Tensor) or t is None or s.dim() != t.dim():
            continue
        diff = [d for d in range(1, s.dim()) if s.shape[d] != t.shape[d]]
        if len(diff) == 1:
            d = diff[0]
            out[n] = (d, torch.nn.Linear(s.shape[d], t.shape[d], bias=False))
    return out


class Trainer:
    """Distillation fine-tune of ``student`` towards ``teacher`` on the training split."""

    def __init__(self, student, teacher, spec: IOSpec, train: Samples, cfg: PruneConfig, masks=None,
                 features: Sequence[str] = ()):
        torch = lazy_import("torch")
        self.student, self.teacher, self.spec, self.cfg, self.masks = student, teacher, spec, cfg, masks or {}
        self.features = list(features) if cfg.feature_weight > 0 else []
        self.dist = distributed_session()  # None: one process (the default)
        self.batch = cfg.batch_size
        self.device = None  # where training runs when not on the CPU (a CUDA rank of an NCCL group)
        if self.dist is not None:  # every rank holds the whole split and takes its part of each global batch
            self.dist.local_batch(cfg.batch_size, len(train))
            self.device = torch.device(self.dist.device) if self.dist.device != "cpu" else None
        self.xs = _tensors(train, spec)
        self.ys = [torch.from_numpy(train.labels[o.name]) if o.name in train.labels else None for o in spec.outputs]
        self.n = len(train)
        self.gen = torch.Generator().manual_seed(cfg.seed)  # the same on every rank: the same global batches
        self._ddp = None  # the DistributedDataParallel wrapper while a distributed run() trains
        hooks = _Features(teacher, self.features)
        try:
            with torch.no_grad():
                teacher.eval()
                outs, feats = [], []
                for s in range(0, self.n, 256):
                    outs.append(_outs(teacher(*[x[s:s + 256] for x in self.xs])))
                    feats.append(hooks.take())
        finally:
            hooks.close()
        self.teacher_outs = [torch.cat(c) for c in zip(*outs)]
        self.teacher_feats = {n: torch.cat([f[n] for f in feats]) for n in self.features if all(n in f for f in feats)}
        self.adapters: dict = {}

    def _on(self, t):
        """``t`` on the training device (unchanged on the CPU)."""
        return t if self.device is None or t is None else t.to(self.device)

    def _forward(self, *xs):
        """The student's training forward pass (through DistributedDataParallel on a distributed run)."""
        return (self._ddp or self.student)(*xs)

    def _past(self, deadline: float | None) -> bool:
        """Whether the fine-tune's deadline has passed: on a distributed run one decision for every rank (a rank
        that stopped alone would leave the others waiting in a collective)."""
        late = deadline is not None and time.monotonic() > deadline
        return self.dist.any(late) if self.dist is not None and deadline is not None else late

    def _make_adapters(self) -> list:
        """Adapters for the features whose width pruning changed (one probe pass); their parameters."""
        torch = lazy_import("torch")
        hooks = _Features(self.student, list(self.teacher_feats))
        try:
            with torch.no_grad():
                self.student.eval()
                self.student(*[x[:2] for x in self.xs])
        finally:
            hooks.close()
        self.adapters = width_adapters(hooks.take(), {n: f[:2] for n, f in self.teacher_feats.items()})
        return [p for _, linear in self.adapters.values() for p in linear.parameters()]

    def gradients(self, model=None, batches: int = 4) -> None:
        """Accumulate loss gradients on a few batches (for Taylor importance): CE on labels, else teacher argmax."""
        model = self.student if model is None else model
        device = _device_of(model)
        model.zero_grad()
        model.eval()
        for b, idx in enumerate(self._batches()):
            if b >= batches:
                break
            idx = self._mine(idx)
            outs = _outs(model(*[x[idx].to(device) for x in self.xs]))
            loss = 0.0
            for o, t, y in zip(outs, self.teacher_outs, self.ys):
                if o.dim() == 2:
                    target = y[idx] if y is not None else t[idx].argmax(-1)
                    loss = loss + lazy_import("torch").nn.functional.cross_entropy(o, target.to(device))
            loss.backward()
        if self.dist is not None:  # every rank ranks channels by the same gradients: the same channels go everywhere
            self.dist.average_grads(model.parameters())

    def _mine(self, t):
        """This rank's strided part of a global batch (index tensor or batch tensor); all of it in one process."""
        return t if self.dist is None else t[self.dist.rank::self.dist.world_size]

    def _batches(self):
        """The global batches of one epoch (the same on every rank: see ``_mine`` for this rank's part)."""
        torch = lazy_import("torch")
        perm = torch.randperm(self.n, generator=self.gen)
        bs = self.batch
        for s in range(0, self.n - (bs // 2 if self.n > bs else 0), bs):  # drop a tiny last batch (BatchNorm)
            yield perm[s:s + bs]

    def _recombined_loss(self, idx):
        """Distillation on new input combinations (input k of sample i with input j of sample p(i)):
        the teacher labels them, so the small training split yields many more distinct examples."""
        torch = lazy_import("torch")
        xs = [self.xs[0][idx]] + [x[idx[torch.randperm(len(idx), generator=self.gen)]] for x in self.xs[1:]]
        xs = [self._on(self._mine(x)) for x in xs]  # re-paired over the global batch, this rank's part trained
        with torch.no_grad():
            t = _outs(self.teacher(*xs))
        return distill_loss(_outs(self._forward(*xs)), t, [None] * len(t), self.cfg)

    def _teacher(self, batch):
        """The teacher's outputs and branch features on ``batch``."""
        torch = lazy_import("torch")
        hooks = _Features(self.teacher, list(self.teacher_feats))
        try:
            with torch.no_grad():
                outs = _outs(self.teacher(*batch))
        finally:
            hooks.close()
        return outs, hooks.take()

    def _shifted(self, batch) -> list:
        """Each sample translated by up to ``cfg.shift`` of its extent (edges replicated): image inputs
        in both spatial axes, audio inputs along time (the last axis); other inputs unchanged."""
        torch = lazy_import("torch")
        F = torch.nn.functional
        out = []
        for x, t in zip(batch, self.spec.inputs):
            axes = {"image": 2, "audio": 1}.get(t.modality, 0) if x.dim() == 4 and x.is_floating_point() else 0
            if not axes:
                out.append(x)
                continue
            h, w = x.shape[-2:]
            ph, pw = (int(self.cfg.shift * h) if axes == 2 else 0), int(self.cfg.shift * w)
            padded = F.pad(x, (pw, pw, ph, ph), mode="replicate")
            dy = torch.randint(0, 2 * ph + 1, (len(x),), generator=self.gen)
            dx = torch.randint(0, 2 * pw + 1, (len(x),), generator=self.gen)
            out.append(torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(x))]))
        return out

    def _mixup_loss(self, idx, hooks: _Features, batch):
        """Function matching on mixed inputs: each sample blended with another (one weight per sample,
        the same for every input), the teacher's outputs and branch features as targets. The small
        training split then covers the space between its samples, where the teacher is still right."""
        torch = lazy_import("torch")
        other = torch.randperm(len(idx), generator=self.gen)
        lam = torch.rand(len(idx), generator=self.gen)
        xs = []
        for x in batch:
            if not x.is_floating_point():
                xs.append(x)  # token ids: not blended
                continue
            w = lam.view(-1, *([1] * (x.dim() - 1))).to(x.device)
            xs.append(w * x + (1 - w) * x[other.to(x.device)])
        xs = [self._on(self._mine(x)) for x in xs]  # blended over the global batch, this rank's part trained
        targets, t_feats = self._teacher(xs)
        hooks.take()
        loss = distill_loss(_outs(self._forward(*xs)), targets, [None] * len(targets), self.cfg)
        if self.teacher_feats:
            loss = loss + self.cfg.feature_weight * feature_loss(hooks.take(), t_feats, self.adapters)
        return loss

    def epoch(self, optimizer, deadline: float | None) -> float:
        self.student.train()
        losses = []
        hooks = _Features(self.student, list(self.teacher_feats))
        try:
            for idx in self._batches():
                if self._past(deadline):
                    break
                losses.append(self._step(idx, optimizer, hooks))
        finally:
            hooks.close()
            self.student.eval()
        loss = float(np.mean(losses)) if losses else float("nan")
        return self.dist.mean(loss) if self.dist is not None else loss  # every rank takes as many steps: the global mean

    def _step(self, idx, optimizer, hooks: _Features) -> float:
        from .sparsity import reapply

        # The global batch is prepared alike on every rank (same random draws); each trains on its part of it.
        whole = [x[idx] for x in self.xs]
        if self.cfg.shift > 0:
            whole = self._shifted(whole)
        mine = self._mine(idx)
        batch = [self._on(self._mine(x)) for x in whole]
        labels = [self._on(y[mine]) if y is not None else None for y in self.ys]
        if self.cfg.shift > 0:  # new inputs each time: the teacher's targets on the fly
            targets, t_feats = self._teacher(batch)
        else:
            targets = [self._on(t[mine]) for t in self.teacher_outs]
            t_feats = {n: self._on(f[mine]) for n, f in self.teacher_feats.items()}
        hooks.take()
        outs = _outs(self._forward(*batch))
        loss = distill_loss(outs, targets, labels, self.cfg)
        if self.teacher_feats:
            loss = loss + self.cfg.feature_weight * feature_loss(hooks.take(), t_feats, self.adapters)
        if self.cfg.mixup:
            loss = loss + self._mixup_loss(idx, hooks, whole)
        if self.cfg.recombine and len(self.xs) > 1:
            loss = loss + self._recombined_loss(idx)
        hooks.take()  # the recombined pass's features: same per-branch inputs, nothing new to match
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if self.masks:
            reapply(self.student, self.masks)
        return float(loss.detach())

    def run(self, epochs: int, deadline: float | None, evaluation: Samples | None, label: str,
            progress: Callable[[str], None]) -> list[dict]:
        torch = lazy_import("torch")
        history = []
        if epochs <= 0:
            return history
        extra = self._make_adapters() if self.teacher_feats else []
        if self.device is not None:
            for m in (self.student, self.teacher, *(linear for _, linear in self.adapters.values())):
                m.to(self.device)
        optimizer = torch.optim.AdamW([*self.student.parameters(), *extra], lr=self.cfg.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
        # Rank 0 alone evaluates each epoch (its history is the one reports/pruning.json keeps).
        speaks = self.dist is None or self.dist.is_main
        try:
            if self.dist is not None:  # its construction gives every rank rank 0's weights and adapters
                self._ddp = self.dist.wrap(_joint(self.student, self.adapters))
            for e in range(epochs):
                if self._past(deadline):
                    progress(f"{label}: fine-tune budget spent after {e} epoch(s)")
                    break
                loss = self.epoch(optimizer, deadline)
                sched.step()
                if self.dist is not None:  # BatchNorm statistics drift by each rank's last batches: rank 0's for all
                    self.dist.broadcast_module(self.student)
                acc = evaluate(self.student, self.spec, evaluation) if speaks else {}
                history.append({"epoch": e + 1, "loss": loss, "top1": acc})
                progress(f"{label} epoch {e + 1}/{epochs} loss {loss:.4f}" + "".join(f" {h} {v:.3f}" for h, v in acc.items()))
        finally:
            self._ddp = None  # its hooks go with it: the next prune step reshapes the parameters
            if self.device is not None:
                for m in (self.student, self.teacher, *(linear for _, linear in self.adapters.values())):
                    m.to("cpu")
        if history and self.cfg.bn_recalibrate and self.recalibrate_bn():
            acc = evaluate(self.student, self.spec, evaluation)
            progress(f"{label}: BatchNorm statistics re-estimated on the training split" + "".join(f" {h} {v:.3f}" for h, v in acc.items()))
        return history

    def recalibrate_bn(self) -> bool:
        """Re-estimate every BatchNorm's running mean / variance on the clean training inputs (one pass,
        cumulative average). Training updates them on blended, re-paired or shifted batches too, whose
        statistics differ from real inputs'; this puts them back on real data. False: no BatchNorm."""
        torch = lazy_import("torch")
        bns = [m for m in self.student.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        if not bns:
            return False
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the pass
        was = self.student.training
        self.student.train()
        device = _device_of(self.student)
        try:
            with torch.no_grad():
                for idx in self._batches():
                    idx = self._mine(idx)
                    self.student(*[x[idx].to(device) for x in self.xs])
        finally:
            for m, mom in zip(bns, momenta):
                m.momentum = mom
            self.student.train(was)
        if self.dist is not None:  # each rank measured its part of every batch: their mean for all
            self.dist.average_tensors([t for m in bns for t in (m.running_mean, m.running_var) if t is not None])
        return True
