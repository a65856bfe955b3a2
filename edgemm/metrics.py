"""Comparison functions shared by verify, the PTQ search, INC and QAT: parity, task metrics, agreement, budgets.

Every output has a task (``edgemm.iospec.TASKS``) and is measured by it:
- classification: top-1 on integer class labels;
- regression: MAE (the budgeted metric) and RMSE on float targets, in the targets' own units;
- embedding: cosine and recall@k against the fp32 model's embeddings of the same samples (recall@1: each
  sample's own fp32 embedding is the nearest of the set's, by cosine);
- raw: parity only (no task metric).
A head's "drop" is how much worse a model is on that metric: top-1 or recall points lost, MAE gained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

# One tolerance for "within budget" everywhere (top-1 values are multiples of 1/N; float noise only).
BUDGET_TOLERANCE = 1e-9

# The metric each task is budgeted and reported by (``metrics: {HEAD: value}`` in reports).
PRIMARY = {"classification": "top1", "regression": "mae", "embedding": "recall@1"}
LOWER_IS_BETTER = frozenset({"mae", "rmse"})
_ROWS = 1024  # embedding similarity computed in blocks of this many rows (an N x N matrix would not fit for large N)


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


# ------------------------------------------------------------------ tasks


def head_tasks(outputs: Sequence, labels: Mapping[str, np.ndarray] | None = None) -> dict[str, str]:
    """output name -> task: the declared ``task``; else classification for a head with class ``labels``; else
    from the label array the data gives (float targets: regression, integers: classification); else raw."""
    labels = labels or {}
    out = {}
    for t in outputs:
        if t.task is not None:
            out[t.name] = t.task
        elif t.labels is not None:
            out[t.name] = "classification"
        elif t.name in labels:
            out[t.name] = "regression" if np.asarray(labels[t.name]).dtype.kind == "f" else "classification"
        else:
            out[t.name] = "raw"
    return out


def top1(logits: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Top-1 accuracy per labelled head present in ``logits``."""
    return {head: float((logits[head].argmax(-1) == y).mean()) for head, y in labels.items() if head in logits}


def regression_scores(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """MAE and RMSE of ``pred`` ([N, ...]) against float ``target`` ([N] or [N, ...], the same values per row)."""
    n = len(target)
    p = np.asarray(pred, np.float64).reshape(n, -1)
    y = np.asarray(target, np.float64).reshape(n, -1)
    if p.shape != y.shape:
        raise ValueError(f"regression output has {p.shape[1]} value(s) per sample, the targets {y.shape[1]}")
    err = p - y
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean()))}


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def embedding_scores(reference: np.ndarray, out: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """``cosine``: mean per-sample cosine of ``out`` vs the ``reference`` embeddings of the same samples;
    ``cosine_min``: the worst sample's; ``recall@k``: the fraction of samples whose own reference embedding is
    among the k nearest (by cosine) of all the set's reference embeddings to the sample's ``out`` (a tie counts
    as found). k larger than the set is left out."""
    ref, got = _unit_rows(reference), _unit_rows(out)
    n = len(ref)
    own = (ref * got).sum(1)
    rank = np.empty(n, np.int64)  # how many reference embeddings are strictly closer than the sample's own
    for s in range(0, n, _ROWS):
        sim = got[s:s + _ROWS] @ ref.T
        rank[s:s + _ROWS] = (sim > own[s:s + _ROWS, None] + 1e-12).sum(1)
    scores = {"cosine": float(own.mean()) if n else 1.0, "cosine_min": float(own.min()) if n else 1.0}
    for k in ks:
        if k == 1 or k < n:
            scores[f"recall@{k}"] = float((rank < k).mean()) if n else 1.0
    return scores


def head_scores(task: str, out: np.ndarray, target: np.ndarray | None = None,
                reference: np.ndarray | None = None) -> dict[str, float] | None:
    """Every metric of one head by its task (None: nothing to measure it on: no labels / no reference / raw)."""
    if task == "classification" and target is not None:
        return {"top1": float((np.asarray(out).argmax(-1) == target).mean())}
    if task == "regression" and target is not None:
        return regression_scores(out, target)
    if task == "embedding" and reference is not None:
        return embedding_scores(reference, out)
    return None


def agreement(ref: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray], heads) -> dict[str, float]:
    """Fraction of samples where ``out`` predicts the same class as ``ref``, per head."""
    return {h: float((ref[h].argmax(-1) == out[h].argmax(-1)).mean()) for h in heads if h in ref and h in out}


# ------------------------------------------------------------------ drops and budgets


def head_drop(task: str, reference: float, value: float, relative: bool = False) -> float:
    """How much worse ``value`` is than ``reference`` on the task's metric: points lost (top-1, recall@1) or
    MAE gained (regression); a fraction of the reference when ``relative``."""
    d = (value - reference) if task == "regression" else (reference - value)
    if not relative:
        return float(d)
    if reference > 0:
        return float(d / reference)
    if task == "regression":  # a perfect reference (MAE 0): any error is infinitely worse in relative terms
        return 0.0 if d <= 0 else math.inf
    return float(d)


def top1_drop(ref: Mapping[str, float], got: Mapping[str, float], relative: bool) -> float:
    """The worst head's top-1 drop vs the reference (a fraction of it when ``relative``)."""
    drops = [head_drop("classification", ref[h], got[h], relative) for h in ref if h in got]
    return max(drops) if drops else 0.0


@dataclass(frozen=True)
class Budget:
    """The accuracy budget of INT8 per head: ``max_drop`` for every head in its task's unit (top-1 / recall points,
    MAE increase in the targets' units; a fraction of the reference when ``relative``); ``regression``: a budget
    of its own for regression heads (``(value, relative)``), else ``max_drop``'s. ``max_drop=None``: no budget."""

    max_drop: float | None = None
    relative: bool = False
    regression: tuple[float, bool] | None = None

    def of(self, task: str) -> tuple[float | None, bool]:
        if task == "regression" and self.regression is not None and self.max_drop is not None:
            return self.regression
        return self.max_drop, self.relative

    def drops(self, reference: Mapping[str, float], got: Mapping[str, float], tasks: Mapping[str, str]) -> dict[str, float]:
        """Each measured head's drop, in the unit of its budget."""
        return {h: head_drop(tasks.get(h, "classification"), reference[h], got[h], self.of(tasks.get(h, "classification"))[1])
                for h in reference if h in got}

    def drop(self, reference: Mapping[str, float], got: Mapping[str, float], tasks: Mapping[str, str]) -> float | None:
        """The worst head's drop on ``max_drop``'s scale (None: no head measured). A head with a budget of its own
        counts as ``max_drop`` plus its excess over its own budget, so ``drop <= max_drop`` holds exactly when every
        head is within its budget."""
        drops = self.drops(reference, got, tasks)
        if not drops:
            return None
        worst = -math.inf
        for h, d in drops.items():
            b, _ = self.of(tasks.get(h, "classification"))
            if self.max_drop is not None and b is not None and b != self.max_drop:
                d = self.max_drop + (d - b)
            worst = max(worst, d)
        return float(worst)

    def met(self, drop: float | None) -> bool | None:
        return within_budget(drop, self.max_drop)


def within_budget(drop: float | None, max_drop: float | None) -> bool | None:
    """None when there is no budget or no measurement."""
    if drop is None or max_drop is None:
        return None
    return drop <= max_drop + BUDGET_TOLERANCE
