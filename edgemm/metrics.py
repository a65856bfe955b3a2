"""Comparison functions shared by verify, the PTQ search, INC and QAT: parity, top-1, agreement, budgets."""
from __future__ import annotations

from typing import Mapping

import numpy as np

# One tolerance for "within budget" everywhere (top-1 values are multiples of 1/N; float noise only).
BUDGET_TOLERANCE = 1e-9


def parity(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """max-abs, mean-abs and cosine of ``out`` vs ``ref``. Non-finite outputs give cosine NaN (a breach)."""
    a = ref.astype(np.float64).ravel()
    b = out.astype(np.float64).ravel()
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(a))):
        finite = np.isfinite(a) & np.isfinite(b)
        diff = np.abs(a[finite] - b[finite])
        return {"max_abs": float("inf"), "mean_abs": float(diff.mean()) if diff.size else float("inf"), "cosine": float("nan"),
                "non_finite": int((~np.isfinite(b)).sum())}
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
    diff = np.abs(a - b)
    return {"max_abs": float(diff.max(initial=0.0)), "mean_abs": float(diff.mean()) if diff.size else 0.0, "cosine": cosine}


def below(value: float, floor: float) -> bool:
    """``value < floor``, with NaN counted as below (a NaN cosine is never a pass)."""
    return not value >= floor


def top1(logits: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Top-1 accuracy per labelled head present in ``logits``."""
    return {head: float((logits[head].argmax(-1) == y).mean()) for head, y in labels.items() if head in logits}


def agreement(ref: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray], heads) -> dict[str, float]:
    """Fraction of samples where ``out`` predicts the same class as ``ref``, per head."""
    return {h: float((ref[h].argmax(-1) == out[h].argmax(-1)).mean()) for h in heads if h in ref and h in out}


def top1_drop(ref: Mapping[str, float], got: Mapping[str, float], relative: bool) -> float:
    """The worst head's top-1 drop vs the reference (a fraction of it when ``relative``)."""
    drops = [(ref[h] - got[h]) / (ref[h] if relative and ref[h] > 0 else 1.0) for h in ref if h in got]
    return max(drops) if drops else 0.0


def within_budget(drop: float | None, max_drop: float | None) -> bool | None:
    """None when there is no budget or no measurement."""
    if drop is None or max_drop is None:
        return None
    return drop <= max_drop + BUDGET_TOLERANCE
