"""Pruning composed with INT8 through the public API on the tiny attention model: the bundle's fp32 and
int8 artifacts are the pruned model's, accuracy.json's reference is the user's original model, and
reports/pruning.json has every stage (before, after pruning, after fine-tuning, after INT8)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import edgemm
from edgemm.stages.prune import STAGES, PruneBudgetNotMet
from prune_tiny import TinyAttnAV, run, tiny_samples, tiny_spec


def _npz(path, samples):
    np.savez(path, **samples.feeds, **samples.labels)
    return path


def _top1(model, samples) -> dict[str, float]:
    outs = run(model, samples.feeds)
    return {h: float((o.argmax(-1) == samples.labels[h]).mean()) for h, o in zip(("cls", "spk"), outs)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("prune-int8")
    m = TinyAttnAV()
    train, evaluation = tiny_samples(m, 128, seed=1), tiny_samples(m, 96, seed=2)  # labelled by the original: top-1 1.0
    return d, m, _npz(d / "train.npz", train), _npz(d / "eval.npz", evaluation), evaluation


@pytest.mark.parametrize("qat", [False, True], ids=["ptq", "qat"])
def test_pruned_int8_bundle(data, qat):
    d, m, train, ev, evaluation = data
    before = {k: v.detach().clone() for k, v in m.state_dict().items()}
    out = d / ("qat" if qat else "ptq")
    b = edgemm.export(m, spec=tiny_spec(), example_inputs={k: v[:2] for k, v in evaluation.feeds.items()}, output=out,
                      prune=0.5, int8=True, qat=qat, calibration=train, evaluation=ev, targets=["onnxruntime"],
                      max_drop=None, prune_options={"epochs": 2, "iterative_steps": 1, "max_drop": None})
    assert all(np.array_equal(before[k], v) for k, v in m.state_dict().items())  # the user's model is untouched
    original = _top1(m, evaluation)
    acc = json.loads((b.root / "reports/accuracy.json").read_text())
    prn = json.loads((b.root / "reports/pruning.json").read_text())
    # the reference is the user's original (unpruned) fp32 model, and the drops are measured against it
    assert acc["reference"]["metrics"] == pytest.approx(original)
    assert prn["accuracy"]["before"] == pytest.approx(original)
    assert original == {"cls": 1.0, "spk": 1.0}
    # pruning really changed the model (so a wrong reference would show): its outputs differ from the original's,
    # and the pruned artifacts are checked against the pruned model's outputs
    ref, pruned = (np.load(b.root / p) for p in ("data/parity_reference.npz", "data/parity_reference.pruned.npz"))
    assert not np.allclose(ref["cls"], pruned["cls"], atol=1e-3)
    parity = json.loads((b.root / "reports/parity.json").read_text())["artifacts"]
    assert parity["onnx/model.fp32.onnx"]["reference"] == "data/parity_reference.pruned.npz"
    assert min(o["cosine"] for o in parity["onnx/model.fp32.onnx"]["outputs"].values()) >= 0.9999
    arts = acc["artifacts"]
    assert {a["precision"] for a in arts.values()} >= {"fp32", "int8"}
    for a in arts.values():
        for h, v in a["metrics"].items():
            assert a["drop"][h] == pytest.approx(original[h] - v)
    # every stage of pruning.json, after_int8 = the worst int8 artifact per head
    assert set(prn["accuracy"]) == set(STAGES)
    worst = {h: min(a["metrics"][h] for a in arts.values() if a["precision"] == "int8") for h in original}
    assert prn["accuracy"]["after_int8"] == pytest.approx(worst)
    assert prn["drop"]["after_int8"] == pytest.approx({h: original[h] - worst[h] for h in original})
    if qat:
        assert any(a["method"] == "qat" for a in arts.values())
    # the fp32 and int8 artifacts are the pruned model's: the first conv has 8 of 16 output channels
    for art in b.manifest["artifacts"]:
        if art["path"].endswith(".onnx"):
            g = onnx.load(b.root / art["path"]).graph
            shapes = {tuple(i.dims) for i in g.initializer}
            assert (8, 3, 3, 3) in shapes and (16, 3, 3, 3) not in shapes, art["path"]
    assert prn["size_bytes"]["after"] < prn["size_bytes"]["before"]
    assert prn["latency_ms"]["onnxruntime"]["before"] > 0 and prn["latency_ms"]["onnxruntime"]["after"] > 0
    assert b.manifest["pruning"]["ratios"] == {"*": 0.5} and b.manifest["reports"]["pruning"] == "reports/pruning.json"


def test_pruning_budget_missed_keeps_bundle_and_says_what_to_do(data):
    """Pruning's own check covers every head: a drop over the budget is one error after the bundle is written."""
    d, m, train, ev, evaluation = data
    out = d / "over-budget"
    with pytest.raises(PruneBudgetNotMet, match=r"pruning lost more than its budget of 0\.50 top-1 points .*--finetune-epochs"):
        edgemm.export(m, spec=tiny_spec(), example_inputs={k: v[:2] for k, v in evaluation.feeds.items()}, output=out,
                      prune=0.9, calibration=train, evaluation=ev, targets=["onnxruntime"],
                      prune_options={"epochs": 0, "max_drop": 0.005})
    prn = json.loads((out / "reports/pruning.json").read_text())
    budget = prn["budget"]
    assert budget["met"] is False and budget["max_drop"] == 0.005 and budget["stage"] == "after_pruning"
    assert set(budget["drop"]) == {"cls", "spk"} and max(budget["drop"].values()) > 0.005
    assert (out / "manifest.json").is_file()


def test_training_argument_takes_a_generator(data):
    """``edgemm.export(..., training={"generator": ...})``: the fine-tune reads the rendered split, not the calibration data."""
    d, m, train, ev, evaluation = data
    b = edgemm.export(m, spec=tiny_spec(), example_inputs={k: v[:2] for k, v in evaluation.feeds.items()}, output=d / "gen",
                      prune=0.5, calibration=train, evaluation=ev, targets=["onnxruntime"],
                      training={"generator": "prune_tiny:generated_training", "n": 80, "seed": 3},
                      prune_options={"epochs": 1, "max_drop": None})
    ft = json.loads((b.root / "reports/pruning.json").read_text())["finetune"]
    assert ft["split"] == "prune_tiny:generated_training(n=80, seed=3)" and ft["samples"] == 80
    with pytest.raises(edgemm.EdgemmError, match="training must be a path"):
        edgemm.export(m, spec=tiny_spec(), output=d / "bad", prune=0.5, training=3)
    assert not (d / "bad").exists()
