"""``reports/pruning.json``: what pruning did, measured.

Keys (numbers: counts, bytes, milliseconds; accuracies are top-1 fractions in [0, 1]):

- ``format``: 1
- ``request``: ``{"ratios": {branch: ratio} ("*" = the whole model, fusion included), "criterion",
  "sparsity" (null | "2:4"), "iterative_steps", "epochs", "finetune_minutes", "distill_temperature", "lr",
  "mixup", "shift", "bn_recalibrate", "seed"}`` (the fine-tune recipe)
- ``params`` / ``flops`` / ``size_bytes``: ``{"before", "after", "ratio"}`` (after / before; FLOPs count
  one multiply-accumulate as 2); ``size_bytes`` is the fp32 ONNX file of the original and the pruned model
- ``latency_ms``: ``{backend: {"before", "after", "speedup", "batch", "threads"}}`` (medians; speedup =
  before / after, measured interleaved in one process)
- ``accuracy``: ``{"before", "after_pruning", "after_finetune", "after_int8"}``, each ``{head: top1}``
  (``after_int8`` absent without INT8; ``before`` is the user's original fp32 model)
- ``drop``: the same stages as ``accuracy`` minus ``before``: ``{stage: {head: before - top1}}``
- ``branches``: ``{branch: [module names]}``; ``groups``: ``[{"branch", "modules", "channels", "ratio"}]``
- ``finetune``: ``{"split", "samples", "epochs", "seconds", "history": [{"step", "epoch", "loss", "top1"}]}``
- ``sparsity``: ``{"pattern": "2:4", "layers": [...], "cpu_speedup": false}`` or null
- ``budget``: ``{"max_drop", "stage", "drop": {head: drop}, "met"}``: pruning's own check, every head
  at the last fp32 stage (``after_finetune``, else ``after_pruning``) against the original; ``met`` is
  null without labels or without a budget
"""
from __future__ import annotations

from typing import Mapping

STAGES = ("before", "after_pruning", "after_finetune", "after_int8")


def _pair(before, after) -> dict | None:
    if before is None and after is None:
        return None
    return {"before": before, "after": after, "ratio": (after / before) if before and after is not None else None}


def pruning_report(
    *,
    request: Mapping | None = None,
    params: tuple[int, int] | None = None,
    flops: tuple[int, int] | None = None,
    size_bytes: tuple[int, int] | None = None,
    latency_ms: Mapping[str, Mapping] | None = None,
    accuracy: Mapping[str, Mapping[str, float]] | None = None,
    branches: Mapping | None = None,
    groups: list | None = None,
    finetune: Mapping | None = None,
    sparsity: Mapping | None = None,
    max_drop: float | None = None,
) -> dict:
    """The ``reports/pruning.json`` dict from measurements: ``(before, after)`` pairs for params, FLOPs and
    size; ``latency_ms={backend: {"before": ms, "after": ms, "batch": 1, "threads": 2}}``;
    ``accuracy={stage: {head: top1}}`` with stages from ``STAGES``."""
    acc = {k: dict(v) for k, v in (accuracy or {}).items() if v}
    unknown = set(acc) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown accuracy stage(s) {sorted(unknown)}; use {STAGES}")
    lat = {}
    for backend, m in (latency_ms or {}).items():
        entry = dict(m)
        if entry.get("before") and entry.get("after"):
            entry["speedup"] = entry["before"] / entry["after"]
        lat[backend] = entry
    before = acc.get("before", {})
    drop = {st: {h: before[h] - v for h, v in a.items() if h in before} for st, a in acc.items() if st != "before"}
    stage = next((st for st in ("after_finetune", "after_pruning") if drop.get(st)), None)
    budget = {"max_drop": max_drop, "stage": stage, "drop": drop.get(stage, {}) if stage else {},
              "met": None if max_drop is None or stage is None else all(d <= max_drop + 1e-9 for d in drop[stage].values())}
    return {
        "format": 1,
        "request": dict(request or {}),
        "params": _pair(*params) if params else None,
        "flops": _pair(*flops) if flops else None,
        "size_bytes": _pair(*size_bytes) if size_bytes else None,
        "latency_ms": lat,
        "accuracy": acc,
        "drop": drop,
        "branches": dict(branches or {}),
        "groups": list(groups or []),
        "finetune": dict(finetune) if finetune else None,
        "sparsity": dict(sparsity) if sparsity else None,
        "budget": budget,
    }


def _fmt_ratio(pair: Mapping | None, unit: str, scale: float = 1.0, digits: int = 0) -> str | None:
    if not pair or pair.get("before") is None or pair.get("after") is None:
        return None
    b, a = pair["before"] / scale, pair["after"] / scale
    pct = f" ({a / b:.0%})" if b else ""
    return f"{b:,.{digits}f} -> {a:,.{digits}f}{unit}{pct}"


def pruning_summary(report: Mapping) -> list[str]:
    """Human lines for ``edgemm info`` from a ``reports/pruning.json`` dict (missing keys are skipped)."""
    lines: list[str] = []
    req = report.get("request") or {}
    ratios = req.get("ratios") or {}
    what = ", ".join(("the whole model" if k == "*" else k) + f" {v:g}" for k, v in ratios.items())
    if report.get("sparsity"):
        what = ", ".join(x for x in (what, f"{report['sparsity'].get('pattern')} sparsity (TensorRT sparse weights; no CPU speedup)") if x)
    lines.append(f"pruning: {what or 'none'}" + (f", criterion {req['criterion']}" if req.get("criterion") else ""))
    for key, label, unit, scale, digits in (("params", "parameters", "", 1.0, 0), ("flops", "FLOPs", " M", 1e6, 1),
                                            ("size_bytes", "fp32 ONNX size", " KB", 1024.0, 0)):
        text = _fmt_ratio(report.get(key), unit, scale, digits)
        if text:
            lines.append(f"  {label}: {text}")
    for backend, m in (report.get("latency_ms") or {}).items():
        if m.get("before") is not None and m.get("after") is not None:
            sp = m.get("speedup") or (m["before"] / m["after"] if m["after"] else None)
            lines.append(f"  latency {backend}: {m['before']:.3f} -> {m['after']:.3f} ms"
                         + (f" ({sp:.2f}x faster" if sp else "") + f", batch {m.get('batch', 1)}, {m.get('threads', '?')} threads)")
    acc = report.get("accuracy") or {}
    names = {"before": "original", "after_pruning": "pruned", "after_finetune": "fine-tuned", "after_int8": "int8"}
    heads = list(acc.get("before") or next(iter(acc.values()), {}))
    for h in heads:
        parts = [f"{names[st]} {acc[st][h]:.3f}" for st in STAGES if h in (acc.get(st) or {})]
        if parts:
            lines.append(f"  top-1 {h}: " + " -> ".join(parts))
    budget = report.get("budget") or {}
    if budget.get("met") is not None:
        worst = max(budget["drop"].items(), key=lambda kv: kv[1])
        lines.append(f"  budget: {'met' if budget['met'] else 'NOT met'} (largest drop {worst[0]} {worst[1] * 100:.2f} points, "
                     f"budget {budget['max_drop'] * 100:.2f} on every head)")
    ft = report.get("finetune") or {}
    if ft.get("epochs"):
        lines.append(f"  fine-tune: {ft['epochs']} epoch(s), {ft.get('seconds', 0):.0f} s on {ft.get('split') or '?'} ({ft.get('samples', 0)} samples)")
    mha = report.get("attention_heads")
    if mha:
        lines.append("  attention heads: " + ", ".join(f"{k} {v['before']}->{v['after']}" for k, v in mha.items()))
    return lines

