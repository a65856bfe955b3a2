"""Quantization-aware training: fine-tune with fake-quant + distillation, then export Q/DQ.

The student is a copy of the user's model whose Conv/Linear weights (and the attention input
projection) pass through per-channel symmetric int8 fake-quant and whose Conv/Linear inputs pass
through per-tensor fake-quant (uint8 asymmetric for the ``ort`` scheme, int8 symmetric for
``trt``), with straight-through gradients. It learns from the fp32 teacher's soft outputs
(temperature-scaled KL) plus the labels where given. BatchNorm statistics stay frozen. The
fine-tuned float weights then go through the same Q/DQ quantizer as PTQ, so the placement and
validity rules are identical; only the weights have learned to sit well on the int8 grid.

Under a launcher (``torchrun``, edgemm.distributed) every rank fine-tunes its disjoint shard of the
training split with its share of the batch through DistributedDataParallel, on rank 0's config; rank 0's
final weights are broadcast, and the ranks != 0 end their part of the export there (``FollowerDone``):
the Q/DQ export and quantization are rank 0's.
"""
from __future__ import annotations

import copy

import numpy as np

from ..lazy import lazy_import
from ..distributed import FollowerDone, current as distributed_session
from ..errors import EdgemmError, on_command_line, setting, switch
from ..iospec import IOSpec
from ..log import logger
from .options.qat import MAX_SAMPLES, QATConfig, QATOptions, default_epochs  # noqa: F401  (the [qat] options seam)


def _fake_quant_modules(torch):
    nn = torch.nn

    class WeightFakeQuant(nn.Module):
        """Per-output-channel symmetric int8 (7-bit where the deployed model uses 7-bit weights), straight-through."""

        def __init__(self, bits: int = 8):
            super().__init__()
            self.qmax = float(2 ** (bits - 1) - 1)

        def forward(self, w):
            dims = tuple(range(1, w.dim()))
            scale = w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-8) / self.qmax
            q = torch.clamp(torch.round(w / scale), -self.qmax, self.qmax) * scale
            return w + (q - w).detach()

    class ActFakeQuant(nn.Module):
        """Per-tensor activation fake-quant with EMA-observed ranges."""

        def __init__(self, symmetric: bool, momentum: float = 0.05):
            super().__init__()
            self.symmetric, self.momentum = symmetric, momentum
            self.register_buffer("lo", torch.tensor(0.0))
            self.register_buffer("hi", torch.tensor(0.0))
            self.register_buffer("seen", torch.tensor(False))
            self.observe = True

        def forward(self, x):
            if self.observe:
                lo, hi = x.detach().min(), x.detach().max()
                if not bool(self.seen):
                    self.lo.copy_(lo)
                    self.hi.copy_(hi)
                    self.seen.fill_(True)
                else:
                    self.lo.lerp_(lo, self.momentum)
                    self.hi.lerp_(hi, self.momentum)
            lo, hi = torch.minimum(self.lo, torch.zeros(())), torch.maximum(self.hi, torch.zeros(()))
            if self.symmetric:
                m = torch.maximum(-lo, hi).clamp_min(1e-8)
                scale, zp, qmin, qmax = m / 127.0, 0.0, -127, 127
            else:
                scale = ((hi - lo) / 255.0).clamp_min(1e-8)
                zp, qmin, qmax = torch.round(-lo / scale), 0, 255
            q = (torch.clamp(torch.round(x / scale) + zp, qmin, qmax) - zp) * scale
            return x + (q - x).detach()

    return WeightFakeQuant, ActFakeQuant


def attach_fake_quant(model, symmetric_activations: bool, weight_bits: int = 8):
    """Insert fake-quant into a copy's Conv/Linear/MultiheadAttention; returns (model, remove())."""
    torch = lazy_import("torch", "QAT")
    from torch.nn.utils import parametrize

    WeightFakeQuant, ActFakeQuant = _fake_quant_modules(torch)
    handles, params, observers = [], [], []
    for module in model.modules():
        targets = []
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Linear)):
            targets.append("weight")
        if isinstance(module, torch.nn.MultiheadAttention) and module.in_proj_weight is not None:
            targets.append("in_proj_weight")
        for name in targets:
            parametrize.register_parametrization(module, name, WeightFakeQuant(weight_bits))
            params.append((module, name))
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Linear)):
            fq = ActFakeQuant(symmetric_activations)
            module.add_module("input_fake_quant", fq)
            observers.append(fq)
            handles.append(module.register_forward_pre_hook(lambda m, args: (m.input_fake_quant(args[0]), *args[1:])))

    def remove():
        for h in handles:
            h.remove()
        for module, name in params:
            parametrize.remove_parametrizations(module, name, leave_parametrized=False)  # keep the trained float weights
        for module in model.modules():
            if hasattr(module, "input_fake_quant"):
                del module.input_fake_quant

    return model, observers, remove


def qat_finetune(model, spec: IOSpec, feeds: dict[str, np.ndarray], labels: dict[str, np.ndarray] | None,
                 cfg: QATConfig = QATConfig()):
    """Return a fine-tuned copy of ``model`` (plain fp32 module, fake-quant removed)."""
    torch = lazy_import("torch", "QAT")
    import torch.nn.functional as F

    if not isinstance(model, torch.nn.Module):
        raise EdgemmError(f"{switch('qat')} needs the model as an nn.Module (a recipe factory or the Python API), not a .pt2 program")
    from ..torchutil import torch_threads

    session = distributed_session()
    if session is not None:  # rank 0's settings on every rank (7-bit weights follow rank 0's CPU), threads shared out
        from dataclasses import replace

        cfg = replace(session.broadcast_object(cfg), threads=max(1, cfg.threads // session.launch.local_world_size))
    with torch_threads(cfg.threads):
        student = _finetune(torch, F, model, spec, feeds, labels, cfg)
    if session is not None and not session.is_main:
        raise FollowerDone  # this rank's part is over: the Q/DQ export and quantization are rank 0's
    return student


def _finetune(torch, F, model, spec: IOSpec, feeds, labels, cfg: QATConfig):
    torch.manual_seed(cfg.seed)
    session = distributed_session()
    batch = cfg.batch
    world, rank = (session.world_size, session.rank) if session is not None else (1, 0)
    if session is not None:  # every rank draws the one-process global batches and trains on its strided part of each
        session.local_batch(cfg.batch, len(next(iter(feeds.values()))))
    device = torch.device(session.device if session is not None else "cpu")
    teacher = model.eval()
    student = copy.deepcopy(model).eval()  # eval: dropout off, BatchNorm statistics frozen
    student, observers, remove = attach_fake_quant(student, cfg.symmetric_activations, cfg.weight_bits)
    names = spec.input_names
    x_all = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]
    n = len(x_all[0])
    heads = spec.output_names
    y_all = {h: torch.from_numpy(labels[h]) for h in heads if labels and h in labels}
    if device.type != "cpu":
        teacher.to(device)
        student.to(device)

    def as_tuple(out):
        return (out,) if isinstance(out, torch.Tensor) else tuple(out)

    with torch.no_grad():  # observe ranges before training
        for s in range(0, n, batch):
            student(*[x[s:s + batch].to(device) for x in x_all])
        teacher_out = [torch.cat(t) for t in zip(*[as_tuple(teacher(*[x[s:s + 256].to(device) for x in x_all])) for s in range(0, n, 256)])]
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)  # the same on every rank: the same global batches
    T = cfg.temperature
    net = session.wrap(student) if session is not None else student  # DDP: rank 0's weights and ranges to every rank
    try:
        for epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=gen)
            total, seen = 0.0, 0
            for s in range(0, n, batch):
                if n - s < world:  # a last batch too small to give every rank a sample: skipped on every rank
                    break
                idx = order[s:s + batch][rank::world]
                outs = as_tuple(net(*[x[idx].to(device) for x in x_all]))
                loss = 0.0
                for i, out in enumerate(outs):
                    soft = F.kl_div(F.log_softmax(out / T, -1), F.softmax(teacher_out[i][idx.to(device)] / T, -1),
                                    reduction="batchmean") * T * T
                    loss = loss + soft
                    if i < len(heads) and heads[i] in y_all:
                        loss = loss + cfg.label_weight * F.cross_entropy(out, y_all[heads[i]][idx].to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                seen += len(idx)
            mean = total / max(seen, 1) if session is None else session.mean(total / max(seen, 1))
            logger.info("  QAT epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs, mean)
    finally:
        net = None  # DistributedDataParallel's hooks go with it before the parametrizations are removed
    if session is not None:  # the final state, byte for byte rank 0's on every rank
        session.broadcast_module(student)
    for fq in observers:
        fq.observe = False
    remove()
    if device.type != "cpu":
        student.to("cpu")
        teacher.to("cpu")
    return student.eval()


def add_qat_artifacts(ctx, ptq_results, ptq=None):
    """The QAT stage: fine-tune the graph's deployed model with fake-quant (distilled from it), export, quantize
    like PTQ, compare with ``ptq_results``. ``ctx``: edgemm.stages.base.StageContext (the config's targets and
    PTQ config, the graph's training split, calibration and evaluation data); returns the QAT INT8 results.
    """
    g, cfg = ctx.graph, ctx.config
    model, spec, args, training = g.deployed, g.spec, g.args, g.training
    import tempfile
    from pathlib import Path

    from ..backends.registry import get_backend
    from ..data.generated import describe
    from ..log import step
    from ..torchutil import is_program
    from .export import export_onnx
    from .quantize import add_int8_artifacts
    from .quantize.registry import quantizer_for

    if is_program(model):
        raise EdgemmError(f"{switch('qat')} needs the model as an nn.Module (a recipe factory or the Python API), not a .pt2 program")
    train = training.read()
    if train is None:
        raise EdgemmError(f"{switch('qat')} needs training data: set [data] training (or calibration) in the recipe, or pass "
                          f"{setting('calibration', 'DIR_OR_NPZ') if on_command_line() else 'training= or calibration='}")
    ptq = ptq or cfg.ptq  # the PTQ stage's rules (edgemm.stages.units.ptq_config)
    symmetric = all(quantizer_for(get_backend(t), ptq.quantizers.get(t)).symmetric_activations for t in cfg.export.targets)
    from ..cpu import cpu_int8

    # Train on the grid the deployed model uses: 7-bit weights on CPU targets whose int8 sums saturate (edgemm.cpu).
    cpu_targets = any(get_backend(t).device == "cpu" for t in cfg.export.targets)

    qcfg = ctx.options("qat", QATOptions()).config(symmetric_activations=symmetric, threads=cfg.threads or 2,
                                                   weight_bits=7 if cpu_targets and cpu_int8().u8s8_saturates else 8,
                                                   samples=len(train))
    with step(f"QAT: fine-tuning with fake-quant on {len(train)} samples ({qcfg.epochs} epochs, distilled from fp32)"):
        student = qat_finetune(model, spec, train.feeds, train.labels, qcfg)
    ptq_drop = {r.target: r.candidate.drop for r in ptq_results}
    with tempfile.TemporaryDirectory(prefix="edgemm-qat-") as tmp:
        qat_onnx = Path(tmp) / "qat.fp32.onnx"
        with step("exporting the QAT model to ONNX"):
            export_onnx(student, args, spec, qat_onnx, cfg.export)
        results = add_int8_artifacts(
            ctx, qat_onnx, g.calibration, cfg.export.targets, ptq, model=student, reference=g.reference_metrics,
            method_name="qat",
            extra_info={"qat": {"data": describe(training.source), "samples": len(train), "epochs": qcfg.epochs, "lr": qcfg.lr,
                                "distillation_temperature": qcfg.temperature, "symmetric_activations": qcfg.symmetric_activations,
                                "weight_bits": qcfg.weight_bits,
                                "ptq_drop_on_target": ptq_drop}},
        )
    for r in results:
        before = ptq_drop.get(r.target)
        if before is not None and r.candidate.drop is not None:
            logger.info("  QAT %s: drop %+.4f vs PTQ %+.4f (recovered %+.4f)", r.target, r.candidate.drop, before, before - r.candidate.drop)
    return results
