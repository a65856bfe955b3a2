"""The reference model through INT8 for every target (the issue's done-when, on the shipped evaluation split).

One export with --qat (PTQ artifacts are kept beside the QAT ones) for onnxruntime, openvino and
tensorrt. Latency is not asserted here (speed claims live in benchmarks/); the speed guard is off
so the artifacts do not depend on how loaded the test machine is.
"""
from __future__ import annotations

import json

import onnx
import pytest

import edgemm
from edgemm.stages.quantize.qdq import check_trt_qdq
from models.paths import RECIPE

pytestmark = [pytest.mark.slow, pytest.mark.openvino]


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("avnet-int8") / "bundle"
    edgemm.export(str(RECIPE), output=out, qat=True, targets=["onnxruntime", "openvino", "tensorrt"], speed_guard=False)
    return out


@pytest.fixture(scope="module")
def accuracy(int8_bundle):
    return json.loads((int8_bundle / "reports/accuracy.json").read_text())


@pytest.mark.parametrize("aid,bound", [
    ("onnx/model.int8.onnx", 0.01), ("openvino/model.int8.onnx", 0.01), ("tensorrt/model.int8.onnx#onnxruntime", 0.01),
    ("onnx/model.int8.qat.onnx", 0.005), ("openvino/model.int8.qat.onnx", 0.005), ("tensorrt/model.int8.qat.onnx#onnxruntime", 0.005),
])
def test_int8_digit_top1_within_bound_of_fp32(accuracy, aid, bound):
    art = accuracy["artifacts"][aid]
    assert art["precision"] == "int8" and art["method"] == ("qat" if ".qat." in aid else "ptq")
    assert art["drop"]["digit"] <= bound + 1e-9, (aid, art["metrics"], accuracy["reference"]["metrics"])
    assert accuracy["split"] == "eval" and accuracy["samples"] == 600


def test_int8_artifacts_are_at_most_30_percent_of_fp32(int8_bundle):
    b = edgemm.Bundle.open(int8_bundle)
    fp32 = next(a for a in b.artifacts if a.path == "onnx/model.fp32.onnx").size_bytes(b.root)
    for a in b.artifacts:
        if a.precision == "int8":
            assert a.size_bytes(b.root) <= 0.30 * fp32, (a.path, a.size_bytes(b.root), fp32)


def test_openvino_int8_artifacts_record_their_static_probe(int8_bundle):
    """Each OpenVINO int8 artifact (PTQ and QAT) was compiled for batch-1 shapes in a child process at export, and
    a runtime under the same OpenVINO compiles it static (fixed shapes: less work per call)."""
    from edgemm.backends.openvino.backend import OpenVinoBackend
    from edgemm.runtime.runtime import Runtime

    b = edgemm.Bundle.open(int8_bundle)
    ov_int8 = [a for a in b.artifacts if a.backend == "openvino" and a.precision == "int8"]
    assert len(ov_int8) == 2
    for a in ov_int8:
        assert a.extra["runner"]["static_probe"] == OpenVinoBackend._version(), a.path  # (+ threads: tune_threads)
        with Runtime(b, a, threads=2) as rt:
            rt.run(rt.spec.example_feeds(batch=1))
            assert [k[0][0] for k in rt._runner._requests] == [1]


def test_tensorrt_qdq_model_is_valid(int8_bundle):
    b = edgemm.Bundle.open(int8_bundle)
    trt = [a for a in b.artifacts if a.target == "tensorrt" and a.precision == "int8"]
    assert {a.backend for a in trt} == {"tensorrt", "onnxruntime"}
    for a in trt:
        assert check_trt_qdq(onnx.load(str(b.root / a.path))) == []
        assert a.extra["tensorrt_qdq_check"]["valid"] is True


def test_calibration_and_qat_are_recorded(int8_bundle, accuracy):
    m = json.loads((int8_bundle / "manifest.json").read_text())
    cal = m["calibration"]
    assert cal["samples"] == 300 and cal["method"] == "minmax" and cal["sha256"]
    assert set(cal["coverage"]) == {"image", "audio"}
    qat = next(a for a in m["artifacts"] if a["path"] == "onnx/model.int8.qat.onnx")["extra"]["qat"]
    assert qat["samples"] == 9600 and qat["epochs"] == 1 and qat["data"].startswith("edgemm.zoo.avmnist:training_pairs(") and "onnxruntime" in qat["ptq_drop_on_target"]


def test_int8_runtime_runs_and_agrees_with_fp32(int8_bundle, eval_arrays):
    fp32 = edgemm.load(int8_bundle, backend="onnxruntime", precision="fp32")
    for backend in ("onnxruntime", "openvino"):
        rt = edgemm.load(int8_bundle, backend=backend, precision="int8")
        agree = 0
        for i in range(0, 600, 30):
            feeds = rt.preprocess(image=eval_arrays["image"][i], audio=(eval_arrays["audio"][i], 8000))
            agree += int(rt.run(feeds)["digit"].argmax() == fp32.run(feeds)["digit"].argmax())
        assert agree >= 19, (backend, agree)
