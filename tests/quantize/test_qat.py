"""QAT on a tiny model: fake-quant attaches and detaches cleanly; --qat yields qat artifacts with a PTQ comparison."""
from __future__ import annotations

import json

import numpy as np
import torch

import edgemm
from edgemm.stages.qat import QATConfig, attach_fake_quant, qat_finetune


def test_fake_quant_rounds_weights_and_detaches(two_branch_data):
    model, spec, _, _ = two_branch_data()
    x = {"a": torch.randn(4, 8), "b": torch.randn(4, 8)}
    ref = model(**x)
    import copy

    student, observers, remove = attach_fake_quant(copy.deepcopy(model), symmetric_activations=True)
    w = student.fa.weight  # parametrized: int8 grid per output channel
    scale = w.abs().amax(dim=1, keepdim=True) / 127
    np.testing.assert_allclose((w / scale).detach().numpy(), np.round((w / scale).detach().numpy()), atol=1e-3)
    out = student(**x)
    assert len(observers) == 3 and not torch.equal(out, ref)
    remove()
    assert not hasattr(student.fa, "input_fake_quant") and not hasattr(student.fa, "parametrizations")
    torch.testing.assert_close(student(**x), ref)  # untrained: the float weights are untouched


def test_qat_finetune_moves_weights_and_keeps_the_model_plain(two_branch_data):
    model, spec, calib, evaluation = two_branch_data(outliers=())
    feeds = dict(np.load(calib))
    tuned = qat_finetune(model, spec, feeds, None, QATConfig(epochs=2, lr=1e-2, batch=32))
    assert type(tuned) is type(model)
    assert not torch.equal(tuned.fa.weight, model.fa.weight)
    assert sum(1 for _ in tuned.modules()) == sum(1 for _ in model.modules())


def test_export_with_qat_reports_method_and_ptq_comparison(two_branch_data, tmp_path):
    model, spec, calib, evaluation = two_branch_data()
    b = edgemm.export(model, spec=spec, output=tmp_path / "b", qat=True, calibration=calib, evaluation=evaluation,
                      targets=["onnxruntime"], speed_guard=False, max_drop=0.05)
    acc = json.loads((b.root / "reports/accuracy.json").read_text())
    qat = acc["artifacts"]["onnx/model.int8.qat.onnx"]
    ptq = acc["artifacts"]["onnx/model.int8.onnx"]
    assert qat["method"] == "qat" and ptq["method"] == "ptq"
    manifest = {a["path"]: a for a in b.manifest["artifacts"]}
    info = manifest["onnx/model.int8.qat.onnx"]["extra"]["qat"]
    assert info["samples"] == 200 and "onnxruntime" in info["ptq_drop_on_target"]
    assert qat["drop"]["cls"] <= 0.05
