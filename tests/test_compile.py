"""`edgemm compile` on an existing bundle: OpenVINO IR and ONNX Runtime's offline-optimized model, fp32 and
int8, added to the manifest and verified; the one-line refusals (no int8 model yet, TensorRT missing)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgemm
from edgemm.cli import main


def _verify_rows(bundle_dir):
    return json.loads((bundle_dir / "reports/parity.json").read_text())["artifacts"]


def test_compile_onnxruntime_and_openvino_fp32_adds_verified_artifacts(avnet_bundle_copy, capsys):
    assert main(["compile", str(avnet_bundle_copy), "--target", "onnxruntime", "--threads", "2"]) == 0
    b = edgemm.Bundle.open(avnet_bundle_copy)  # hashes of the new files are checked on open
    ort = [a for a in b.artifacts if a.path == "onnx/model.fp32.ort-extended.onnx"]
    assert len(ort) == 1 and ort[0].backend == "onnxruntime" and ort[0].extra["optimization_level"] == "extended"
    rows = _verify_rows(avnet_bundle_copy)
    assert min(o["cosine"] for o in rows["onnx/model.fp32.ort-extended.onnx"]["outputs"].values()) > 0.9999
    acc = json.loads((avnet_bundle_copy / "reports/accuracy.json").read_text())
    assert acc["artifacts"]["onnx/model.fp32.ort-extended.onnx"]["drop"]["digit"] == pytest.approx(0.0, abs=0.002)
    # compiling again replaces the artifact (it is edgemm's own), it does not duplicate it
    assert main(["compile", str(avnet_bundle_copy), "--target", "onnxruntime", "--no-verify"]) == 0
    assert sum(a.path.endswith("ort-extended.onnx") for a in edgemm.Bundle.open(avnet_bundle_copy).artifacts) == 1
    rt = edgemm.load(avnet_bundle_copy, backend="onnxruntime", precision="fp32")
    assert rt.run({t.name: np.zeros((1, *t.shape[1:]), t.dtype) for t in rt.inputs})["digit"].shape == (1, 10)


@pytest.mark.openvino
def test_compile_int8_needs_an_int8_model_first(avnet_bundle_copy, capsys):
    assert main(["compile", str(avnet_bundle_copy), "--target", "openvino", "--int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "export" in err and "--int8" in err


@pytest.mark.openvino
def test_compile_openvino_int8_from_the_exported_qdq_model(tiny_model, tmp_path):
    from models.tiny import tiny_feeds, tiny_spec

    calib = [tiny_feeds(1, seed=i) for i in range(100)]
    out = tmp_path / "b"
    edgemm.export(tiny_model(), spec=tiny_spec(), example_inputs=tiny_feeds(2), output=out, int8=True, calibration=calib,
                  targets=["openvino"])
    b = edgemm.compile(out, "openvino", precision="int8", threads=2)
    ir = [a for a in b.artifacts if a.path == "openvino/model.int8.xml"]
    assert len(ir) == 1 and ir[0].precision == "int8" and ir[0].extra["source"] == "openvino/model.int8.onnx"
    row = _verify_rows(out)["openvino/model.int8.xml"]
    assert min(o["cosine"] for o in row["outputs"].values()) >= 0.95


def test_compile_tensorrt_without_tensorrt_is_one_line(avnet_bundle_copy, capsys):
    from edgemm.backends.registry import get_backend

    if get_backend("tensorrt").availability().available:
        pytest.skip("TensorRT is installed here; engine builds are tested with the tensorrt marker")
    assert main(["compile", str(avnet_bundle_copy), "--target", "tensorrt"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tensorrt" in err.lower() and "pip install" in err


def test_compile_unknown_target_has_a_hint(avnet_bundle_copy, capsys):
    assert main(["compile", str(avnet_bundle_copy), "--target", "openvno"]) == 2
    assert "did you mean 'openvino'" in capsys.readouterr().err


def test_compile_from_python_verifies_only_what_it_added(tiny_bundle_dir, tmp_path):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(tiny_bundle_dir, out)
    before_parity = _verify_rows(out)
    before_runs = json.loads((out / "reports/latency.json").read_text())["runs"]
    b = edgemm.compile(out, "onnxruntime", threads=2)
    added = "onnx/model.fp32.ort-extended.onnx"
    assert any(a.path == added for a in b.artifacts)
    after_parity = _verify_rows(out)
    assert added in after_parity and added not in before_parity
    # every other artifact's row is the one the export's verification wrote, not a re-measurement
    assert {k: v for k, v in after_parity.items() if k != added} == before_parity
    after_runs = json.loads((out / "reports/latency.json").read_text())["runs"]
    assert [r for r in after_runs if r["artifact"] != added] == before_runs
    assert any(r["artifact"] == added for r in after_runs)
