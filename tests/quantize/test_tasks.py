"""Tasks per output: each head is measured by its task, and the INT8 budget applies to every head.

- regression: float targets stay float (never cast to class indices), MAE and RMSE are reported, the budget is an MAE
  increase; a garbage INT8 model fails it (top-1 on a [B, 1] output would say 0.0 for a perfect and a garbage model);
- embedding: cosine and recall@k against the fp32 model's own embeddings of the same samples;
- classification: top-1 as before.
Small models, real quantizer, real ONNX Runtime, real bundles.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import edgemm
from edgemm import metrics
from edgemm.compare import Comparator
from edgemm.data.datasets import load_samples, samples_from_arrays
from edgemm.errors import SpecError
from edgemm.iospec import IOSpec, TensorSpec
from edgemm.stages.quantize import BudgetNotMet
from edgemm.stages.verify import verify

N = 200


class MultiHead(nn.Module):
    """a [B, 8], b [B, 8] -> trunk -> ``cls`` (4 classes), ``value`` ([B, 1] regression), ``emb`` ([B, 16] embedding),
    ``raw`` ([B, 3], no task: parity only)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fa, self.fb = nn.Linear(8, 16), nn.Linear(8, 16)
        self.cls, self.value, self.emb, self.raw = nn.Linear(32, 4), nn.Linear(32, 1), nn.Linear(32, 16), nn.Linear(32, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.eval()

    def forward(self, a, b):
        h = torch.cat([torch.relu(self.fa(a)), torch.relu(self.fb(b))], dim=1)
        return self.cls(h), self.value(h), self.emb(h), self.raw(h)


class Regressor(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fa, self.fb, self.head = nn.Linear(8, 16), nn.Linear(8, 16), nn.Linear(32, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.eval()

    def forward(self, a, b):
        return self.head(torch.cat([torch.relu(self.fa(a)), torch.relu(self.fb(b))], dim=1))


INPUTS = (TensorSpec("a", "float32", ("batch", 8)), TensorSpec("b", "float32", ("batch", 8)))
MULTI = IOSpec(inputs=INPUTS, outputs=(TensorSpec("cls", "float32", ("batch", 4), labels=("w", "x", "y", "z")),
                                       TensorSpec("value", "float32", ("batch", 1)),
                                       TensorSpec("emb", "float32", ("batch", 16), task="embedding"),
                                       TensorSpec("raw", "float32", ("batch", 3))))
REG = IOSpec(inputs=INPUTS, outputs=(TensorSpec("value", "float32", ("batch", 1)),))


def _feeds(seed: int, n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal((n, 8)).astype(np.float32), "b": rng.standard_normal((n, 8)).astype(np.float32)}


def _outputs(model, feeds) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(torch.from_numpy(feeds["a"]), torch.from_numpy(feeds["b"]))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _data(tmp_path: Path, model, outliers=()) -> tuple[Path, Path, np.ndarray]:
    """calibration + evaluation files; the evaluation's regression targets are the model's own values plus noise (a
    continuous target the data really carries: the fp32 reference MAE is about 0.04, not 0)."""
    ev = _feeds(1)
    outs = _outputs(model, ev)
    rng = np.random.default_rng(3)
    targets = (outs[1 if len(outs) > 1 else 0][:, 0] + rng.normal(0, 0.05, N)).astype(np.float32)
    labels = {"value": targets} if len(outs) == 1 else {"cls": outs[0].argmax(1), "value": targets}
    cal = _feeds(2)
    for name in outliers:
        cal[name][:5] *= 2000.0  # a handful of wild samples stretch the calibrated ranges: INT8 rounds real inputs away
    calib, evaluation = tmp_path / "calib.npz", tmp_path / "eval.npz"
    np.savez(calib, **cal)
    np.savez(evaluation, **ev, **labels)
    return calib, evaluation, targets


# ------------------------------------------------------------------ reading targets


def test_float_targets_stay_float_and_make_the_head_a_regression(tmp_path):
    ev = _feeds(1, 6)
    y = np.array([0.37, -1.25, 2.5, 0.0, 3.75, 1.125], np.float32)
    s = samples_from_arrays({**ev, "value": y}, REG, "eval.npz", tmp_path)
    assert s.labels["value"].dtype.kind == "f" and np.array_equal(s.labels["value"], y)  # never cast to int64
    assert Comparator(REG, s.feeds, s.labels).tasks == {"value": "regression"}
    assert s.class_labels == {}  # what a cross-entropy loss may take: no regression targets
    # [N, 1] targets are taken as they are, too
    assert samples_from_arrays({**ev, "value": y[:, None]}, REG, "x", tmp_path).labels["value"].shape == (6, 1)
    # a declared regression head takes integer targets as floats
    declared = IOSpec(inputs=INPUTS, outputs=(TensorSpec("value", "float32", ("batch", 1), task="regression"),))
    got = samples_from_arrays({**ev, "value": np.arange(6)}, declared, "x", tmp_path).labels["value"]
    assert got.dtype == np.float64 and got.tolist() == [0, 1, 2, 3, 4, 5]
    # a classification head still takes whole floats as class indices ...
    s = samples_from_arrays({**ev, "cls": np.array([0, 1, 2, 3, 0, 1], np.float32)}, MULTI, "x", tmp_path)
    assert s.labels["cls"].dtype == np.int64
    # ... and names the fix for fractional ones; an embedding head takes no targets
    with pytest.raises(SpecError, match=r"fractional .* declare task = 'regression'"):
        samples_from_arrays({**ev, "cls": np.full(6, 0.5)}, MULTI, "x", tmp_path)
    with pytest.raises(SpecError, match=r"'emb', whose task is 'embedding'"):
        samples_from_arrays({**ev, "emb": np.zeros((6, 16), np.float32)}, MULTI, "x", tmp_path)
    with pytest.raises(SpecError, match=r"regression targets 'value' have shape \[6, 2\].*save \[N\] float targets"):
        samples_from_arrays({**ev, "value": np.zeros((6, 2), np.float32)}, declared, "x", tmp_path)
    with pytest.raises(SpecError, match=r"class indices .*, or declare task = 'regression'"):  # ambiguous: not guessed
        samples_from_arrays({**ev, "cls": np.zeros((6, 4), np.float32)}, IOSpec(inputs=INPUTS, outputs=(
            TensorSpec("cls", "float32", ("batch", 4)),)), "x", tmp_path)


def test_task_is_a_manifest_key_of_outputs_and_is_checked():
    spec = IOSpec.from_manifest(MULTI.to_manifest())
    assert spec.output("emb").task == "embedding" and spec.output("value").task is None
    assert "task" not in MULTI.to_manifest()["outputs"][1]  # inferred tasks are the data's, not written
    with pytest.raises(SpecError, match=r"unknown task 'regresion' \(did you mean 'regression'\?\)"):
        TensorSpec("y", task="regresion")
    with pytest.raises(SpecError, match=r"'labels' name the classes"):
        TensorSpec("y", labels=("a", "b"), task="regression")


# ------------------------------------------------------------------ metrics


def test_regression_metrics_tell_a_perfect_model_from_garbage():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, 100).astype(np.float32)
    perfect, garbage = y[:, None].copy(), rng.normal(5, 3, (100, 1)).astype(np.float32)
    # what top-1 said before tasks: argmax of a [B, 1] output is always 0
    assert metrics.top1({"v": perfect}, {"v": y.astype(np.int64)}) == metrics.top1({"v": garbage}, {"v": y.astype(np.int64)})
    p, g = metrics.regression_scores(perfect, y), metrics.regression_scores(garbage, y)
    assert p == {"mae": 0.0, "rmse": 0.0} and g["mae"] > 3 and g["rmse"] >= g["mae"]
    budget = metrics.Budget(0.05)
    tasks = {"v": "regression"}
    assert budget.met(budget.drop({"v": 0.0}, {"v": 0.0}, tasks)) is True
    assert budget.drop({"v": 0.0}, {"v": g["mae"]}, tasks) == pytest.approx(g["mae"]) and not budget.met(g["mae"])
    # a regression budget of its own (absolute MAE increase / relative), beside a top-1 one
    mixed = metrics.Budget(0.01, regression=(0.5, False))
    tasks = {"cls": "classification", "v": "regression"}
    assert mixed.met(mixed.drop({"cls": 0.9, "v": 1.0}, {"cls": 0.9, "v": 1.4}, tasks)) is True
    assert mixed.met(mixed.drop({"cls": 0.9, "v": 1.0}, {"cls": 0.9, "v": 1.6}, tasks)) is False
    assert mixed.met(mixed.drop({"cls": 0.9, "v": 1.0}, {"cls": 0.85, "v": 1.0}, tasks)) is False
    relative = metrics.Budget(0.01, regression=(0.05, True))
    assert relative.drops({"v": 2.0}, {"v": 2.08}, {"v": "regression"})["v"] == pytest.approx(0.04)


def test_embedding_scores_are_cosine_and_recall_against_the_reference():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(64, 16)).astype(np.float32)
    same = metrics.embedding_scores(ref, ref)
    assert same["recall@1"] == 1.0 and same["recall@5"] == 1.0 and same["cosine"] == pytest.approx(1.0)
    close = metrics.embedding_scores(ref, ref + rng.normal(0, 0.05, ref.shape).astype(np.float32))
    assert close["recall@1"] == 1.0 and 0.99 < close["cosine"] < 1.0
    shuffled = metrics.embedding_scores(ref, ref[np.roll(np.arange(64), 1)])  # every sample gets its neighbour's
    assert shuffled["recall@1"] == 0.0 and shuffled["cosine"] < 0.5
    spec = MULTI
    cmp = Comparator(spec, _feeds(0, 64))
    assert cmp.tasks == {"cls": "classification", "value": "raw", "emb": "embedding", "raw": "raw"}  # no labels given
    outs = {"cls": rng.normal(size=(64, 4)), "value": rng.normal(size=(64, 1)), "emb": ref, "raw": rng.normal(size=(64, 3))}
    assert set(cmp.scores(outs, outs)) == {"emb"}  # nothing else can be measured without labels
    assert set(cmp.agreement(outs, outs)) == {"cls"}  # never an argmax of an embedding


# ------------------------------------------------------------------ through export


def _export(model, spec, calib, evaluation, out, **kw):
    return edgemm.export(model, spec=spec, output=out, int8=True, calibration=calib, evaluation=evaluation,
                         targets=["onnxruntime"], speed_guard=False, **kw)


def _int8_entry(root: Path) -> tuple[dict, dict]:
    acc = json.loads((root / "reports/accuracy.json").read_text())
    return acc, acc["artifacts"]["onnx/model.int8.onnx"]


def test_every_head_is_reported_by_its_task(tmp_path, edgemm_log):
    model = MultiHead()
    calib, evaluation, targets = _data(tmp_path, model)
    b = _export(model, MULTI, calib, evaluation, tmp_path / "b", max_drop=0.05,
                options={"quantize": {"max_mae_increase": 0.05}})
    acc, art = _int8_entry(b.root)
    ref = acc["reference"]
    assert ref["task"] == {"cls": "classification", "value": "regression", "emb": "embedding"}  # raw: parity only
    assert ref["metrics"]["cls"] == 1.0 and ref["metrics"]["emb"] == 1.0
    fp32_value = _outputs(model, dict(np.load(evaluation)))[1][:, 0]
    assert ref["metrics"]["value"] == pytest.approx(np.abs(fp32_value - targets).mean(), rel=1e-4)  # the MAE, not a top-1
    assert 0.02 < ref["metrics"]["value"] < 0.06
    assert set(art["metrics"]) == {"cls", "value", "emb"} and art["task"]["value"] == "regression"
    assert set(art["scores"]["value"]) == {"mae", "rmse"} and art["scores"]["value"]["rmse"] >= art["scores"]["value"]["mae"]
    assert set(art["scores"]["emb"]) >= {"cosine", "recall@1"} and art["scores"]["emb"]["cosine"] > 0.95
    assert art["drop"]["value"] == pytest.approx(art["metrics"]["value"] - ref["metrics"]["value"])  # the MAE increase
    assert art["drop"]["cls"] == pytest.approx(ref["metrics"]["cls"] - art["metrics"]["cls"])
    assert "raw" not in art["drop"] and "raw" not in art["metrics"]
    heads = art["budget"]["heads"]
    assert heads["value"]["metric"] == "mae" and heads["emb"]["metric"] == "recall@1" and heads["cls"]["metric"] == "top1"
    assert art["budget"]["regression"] == {"max_mae_increase": 0.05, "relative": False} and art["budget"]["met"] is True
    manifest = json.loads((b.root / "manifest.json").read_text())
    checks = next(a for a in manifest["artifacts"] if a["precision"] == "int8")["extra"]["checks"]
    assert checks["agreement"] is not None and checks["task"]["emb"] == "embedding"
    # the log and verify's summary name each head's metric; no head is given a drop it was not measured for
    summary = verify(b.root, latency=False, write=False).summary()
    assert "value mae" in summary and "emb recall@1" in summary and "value top1" not in summary and "raw " not in summary
    text = "\n".join(r.getMessage() for r in edgemm_log)
    assert "value mae" in text and "drop not measured" not in text


def test_a_garbage_int8_regression_fails_its_budget(tmp_path):
    """Outliers in every input's calibration break every quantized layer: the regression head's MAE grows far beyond
    its budget, the search cannot repair it, and the export says so (the best model is kept, as for top-1)."""
    model = Regressor()
    calib, evaluation, _ = _data(tmp_path, model, outliers=("a", "b"))
    with pytest.raises(BudgetNotMet, match=r"budget 0\.01 not met for onnxruntime: best drop"):
        _export(model, REG, calib, evaluation, tmp_path / "b", max_drop=0.01)
    acc, art = _int8_entry(tmp_path / "b")
    assert acc["reference"]["task"] == {"value": "regression"} and art["task"] == {"value": "regression"}
    assert art["drop"]["value"] > 0.05 and art["budget"]["met"] is False
    assert art["drop"]["value"] == pytest.approx(art["scores"]["value"]["mae"] - acc["reference"]["metrics"]["value"])
    assert acc["sensitivity"] and all(e["measure"] == "drop" for e in acc["sensitivity"])


def test_classification_is_measured_as_before(two_branch_data, tmp_path):
    model, spec, calib, evaluation = two_branch_data()
    b = _export(model, spec, calib, evaluation, tmp_path / "b", max_drop=0.05)
    acc, art = _int8_entry(b.root)
    assert acc["reference"]["metrics"] == {"cls": 1.0} and acc["reference"]["task"] == {"cls": "classification"}
    assert art["task"] == {"cls": "classification"} and set(art["scores"]["cls"]) == {"top1"}
    assert art["drop"]["cls"] == pytest.approx(1.0 - art["metrics"]["cls"]) and art["drop"]["cls"] <= 0.05 + 1e-9
    samples = load_samples(evaluation, spec)
    assert samples.labels["cls"].dtype == np.int64 and samples.class_labels.keys() == {"cls"}
