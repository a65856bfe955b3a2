"""Accuracy budget: a budget that forces fallback, an impossible one, and the reports that say so."""
from __future__ import annotations

import json

import pytest

import edgemm
from edgemm.stages.quantize import BudgetNotMet


def _export(model, spec, calib, evaluation, out, **kw):
    return edgemm.export(model, spec=spec, output=out, int8=True, calibration=calib, evaluation=evaluation,
                         targets=["onnxruntime"], speed_guard=False, **kw)


def _int8(bundle_dir):
    acc = json.loads((bundle_dir / "reports/accuracy.json").read_text())
    return acc, acc["artifacts"]["onnx/model.int8.onnx"]


def test_clean_calibration_meets_the_budget_with_nothing_float(two_branch_data, tmp_path):
    model, spec, calib, evaluation = two_branch_data()
    b = _export(model, spec, calib, evaluation, tmp_path / "b", max_drop=0.05)
    acc, art = _int8(b.root)
    assert art["method"] == "ptq" and art["kept_float"] == [] and art["drop"]["cls"] <= 0.05 + 1e-9
    assert art["budget"]["met"] is True
    assert acc["reference"]["metrics"]["cls"] == 1.0


def test_budget_forces_layers_float_and_the_report_names_them(two_branch_data, tmp_path):
    model, spec, calib, evaluation = two_branch_data(outliers=("a",))
    # Without a budget the broken INT8 model is kept and its drop reported.
    loose = _export(model, spec, calib, evaluation, tmp_path / "loose", max_drop=None)
    _, loose_art = _int8(loose.root)
    assert loose_art["drop"]["cls"] > 0.2 and loose_art["kept_float"] == []
    tight = _export(model, spec, calib, evaluation, tmp_path / "tight", max_drop=0.05)
    acc, art = _int8(tight.root)
    assert art["drop"]["cls"] <= 0.05 + 1e-9
    kept = [layer for k in art["kept_float"] for layer in k["layers"]]
    assert kept and all(k["reason"].startswith("accuracy:") for k in art["kept_float"])
    assert len(kept) < 3  # still an INT8 model
    parts = {s["part"].split(" ")[0]: s["drop"] for s in acc["sensitivity"]}
    assert any(p.startswith("branch:a") for p in parts) and any(p.startswith("layer:") for p in parts)
    assert parts["branch:a"] > 0.2 and parts.get("branch:b", 0.0) <= 0.05


def test_impossible_budget_is_a_clear_error_and_keeps_the_best_model(two_branch_data, tmp_path):
    model, spec, calib, evaluation = two_branch_data(outliers=("a", "b"))
    out = tmp_path / "b"
    with pytest.raises(BudgetNotMet, match=r"budget 0\.0 not met for onnxruntime: best drop .* raise max_drop="):
        _export(model, spec, calib, evaluation, out, max_drop=0.0)
    bundle = edgemm.Bundle.open(out)  # complete and loadable
    _, art = _int8(out)
    assert art["budget"]["met"] is False and art["drop"]["cls"] > 0.0
    rt = edgemm.load(bundle, backend="onnxruntime", precision="int8")
    assert rt.precision == "int8"


def test_relative_budget_parses(two_branch_data, tmp_path):
    model, spec, calib, evaluation = two_branch_data()
    b = _export(model, spec, calib, evaluation, tmp_path / "b", max_drop="5%")
    _, art = _int8(b.root)
    assert art["budget"]["relative"] is True and art["budget"]["max_drop"] == pytest.approx(0.05)
