"""Wav2Vec2's OpenVINO int8 (issue 24: cosine 0.23-0.33 vs fp32 while onnxruntime ran the same Q/DQ file at
0.999). Two OpenVINO 2026.4 CPU faults, each shown on a real random-init Wav2Vec2 and on real OpenVINO: Q/DQ on the
`+ 1` of GELU's erf form (one pair shared by every GELU), and int8 grouped convolutions that are not depthwise
(the positional convolution). The Q/DQ schemes keep both float; the export's OpenVINO int8 then meets 0.98."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
ov = pytest.importorskip("openvino")
onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402

from edgemm.data.calibration import CalibrationSource  # noqa: E402
from edgemm.families.feeds import waveforms  # noqa: E402
from edgemm.families.wrappers import InputValues  # noqa: E402
from edgemm.iospec import IOSpec, TensorSpec  # noqa: E402
from edgemm.recipe import ExportConfig  # noqa: E402
from edgemm.stages.export import export_onnx  # noqa: E402
from edgemm.stages.quantize import graph as G  # noqa: E402
from edgemm.stages.quantize.qdq import SCHEMES, always_float, calibrate, quantize_qdq  # noqa: E402

from hf_tiny import save_wav2vec2, tiny_wav2vec2  # noqa: E402

pytestmark = pytest.mark.openvino
SAMPLES = 16000


def _cosine(a, b) -> float:
    return min(float(np.dot(x.ravel(), y.ravel()) / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    path = tmp_path_factory.mktemp("w2v") / "model.onnx"
    module = InputValues(tiny_wav2vec2())
    module.output_names = ("last_hidden_state",)
    spec = IOSpec((TensorSpec("input_values", "float32", ("batch", SAMPLES)),),
                  (TensorSpec("last_hidden_state", "float32", ("batch", 49, 32)),))
    export_onnx(module, (torch.from_numpy(waveforms(2, SAMPLES, 16000, 0, True)),), spec, path, ExportConfig())
    return G.name_nodes(onnx.load(str(path))), path


def test_the_rules_find_the_gelu_adds_and_the_positional_conv(fp32):
    model, _ = fp32
    produced = {o: n for n in model.graph.node for o in n.output}
    gelu_adds = {n.name for n in model.graph.node if n.op_type == "Add"
                 and any(produced.get(x) is not None and produced[x].op_type == "Erf" for x in n.input)}
    assert len(gelu_adds) == 6  # 3 feature-encoder convs, the positional conv, 2 encoder feed-forwards
    assert set(G.scalar_constant_adds(model)) == gelu_adds
    grouped = G.grouped_convs(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 4 and list(grouped) == [convs[-1].name]  # the positional conv (groups 2); not the encoder's
    assert set(always_float(model, SCHEMES["trt"])) == gelu_adds | set(grouped)
    assert set(always_float(model, SCHEMES["ort"])) == gelu_adds  # onnxruntime runs grouped int8 convs right


def test_openvino_runs_the_trt_scheme_like_onnxruntime(fp32, tmp_path):
    model, path = fp32
    calib = CalibrationSource({"input_values": waveforms(24, SAMPLES, 16000, 1, True)}, "waveforms", "", False)
    masks, mask_tensors = G.mask_like(model, calibrate(path, calib, "minmax", symmetric=False))
    ranges = calibrate(path, calib, "minmax", symmetric=True, skip=mask_tensors)
    out = quantize_qdq(path, tmp_path / "int8.onnx", calib, SCHEMES["trt"], ranges, nodes_to_exclude=sorted(masks))
    x = waveforms(8, SAMPLES, 16000, 123, True)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input_values": x})[0]
    in_ort = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input_values": x})[0]
    # f32: what edgemm's OpenVINO runner asks for (the float parts of an int8 model must not run in bf16)
    in_ov = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({"input_values": x})[0]
    assert _cosine(in_ort, want) >= 0.99
    assert _cosine(in_ov, want) >= 0.99, (_cosine(in_ov, want), _cosine(in_ort, want))


@pytest.mark.slow
def test_export_int8_meets_the_floor_on_both_targets(tmp_path):
    from edgemm.cli import main

    save_wav2vec2(tmp_path / "w2v")
    np.savez(tmp_path / "calib.npz", input_values=waveforms(48, SAMPLES, 16000, 5, True))
    assert main(["-q", "export", str(tmp_path / "w2v"), "--int8", "--calib", str(tmp_path / "calib.npz"), "--target",
                 "onnxruntime,openvino", "--threads", "2", "-o", str(tmp_path / "b")]) == 0
    report = json.loads((tmp_path / "b/reports/parity.json").read_text())["artifacts"]
    int8 = {e["backend"]: e["outputs"]["last_hidden_state"]["cosine"] for e in report.values() if e["precision"] == "int8"}
    assert set(int8) == {"onnxruntime", "openvino"} and min(int8.values()) >= 0.98, int8
