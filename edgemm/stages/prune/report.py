"""``reports/pruning.json``: what pruning did, measured.

Keys (numbers: counts, bytes, milliseconds; accuracies are top-1 fractions in [0, 1]):

- ``format``: 1
- ``request``: ``{"ratios": {branch: ratio} ("*" = every modality branch), "criterion",
  "sparsity" (null | "2:4"), "iterative_steps", "epochs", "finetune_minutes", "distill_temperature"}``
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
    }
