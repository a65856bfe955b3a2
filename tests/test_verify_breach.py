"""Parity breaches are real failures: ParityError names the artifact and the output."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgemm
from edgemm.bundle import MANIFEST, Bundle, sha256_file
from edgemm.cli import main
from edgemm.errors import ParityError
from edgemm.recipe import VerifyConfig

ONNX = "onnx/model.fp32.onnx"


@pytest.fixture(autouse=True)
def _own_bundles_are_trusted():
    """These bundles are the tests' own: verify may load their torch reference program (see edgemm/trust.py)."""
    from edgemm.trust import allow_code

    with allow_code():
        yield


def _perturb_and_rehash(root):
    """Scale one weight tensor of the fp32 ONNX and record the new sha256: the hash check passes, parity must not."""
    import onnx
    from onnx import numpy_helper

    path = root / ONNX
    proto = onnx.load(str(path))
    inits = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and np.prod(i.dims) >= 16]
    assert inits
    w = numpy_helper.to_array(inits[0])
    inits[0].CopyFrom(numpy_helper.from_array((-w * 3.0 + 0.5).astype(np.float32), inits[0].name))
    onnx.save(proto, str(path))
    m = json.loads((root / MANIFEST).read_text())
    digest = sha256_file(path)
    for a in m["artifacts"]:
        if a["path"] == ONNX:
            a["sha256"] = digest
            a["files"][ONNX] = digest
    (root / MANIFEST).write_text(json.dumps(m))
    Bundle.open(root)  # the tampering is invisible to the hash check


def test_perturbed_onnx_breaks_parity(tiny_bundle_copy):
    _perturb_and_rehash(tiny_bundle_copy)
    with pytest.raises(ParityError) as exc:
        edgemm.verify(tiny_bundle_copy, latency=False)
    msg = str(exc.value)
    assert ONNX in msg and "onnxruntime" in msg
    assert "output 'cls'" in msg or "output 'spk'" in msg
    # the reports are still written, so the breach is on record
    parity = json.loads((tiny_bundle_copy / "reports/parity.json").read_text())
    worst = min(o["cosine"] for o in parity["artifacts"][ONNX]["outputs"].values())
    assert worst < 0.9999
    for aid, entry in parity["artifacts"].items():
        if aid != ONNX and entry["precision"] == "fp32":
            assert min(o["cosine"] for o in entry["outputs"].values()) >= 0.9999, aid


def test_perturbed_onnx_fails_cli_verify(tiny_bundle_copy, capsys):
    _perturb_and_rehash(tiny_bundle_copy)
    assert main(["-q", "verify", str(tiny_bundle_copy)]) == 2
    # a loaded machine may add the one-line "timings unstable" warnings of the latency pass; the error is one line
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip() and not l.startswith("warning: ")]
    assert len(err) == 1 and err[0].startswith("edgemm: error: parity breach") and ONNX in err[0]


def test_impossible_threshold_names_artifact_and_output(tiny_bundle_dir, tmp_path):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(tiny_bundle_dir, root)
    with pytest.raises(ParityError) as exc:
        edgemm.verify(root, config=VerifyConfig(cosine_min=1.5, cosine_min_fp16=1.5), latency=False)
    msg = str(exc.value)
    assert "onnx/model.fp32.onnx" in msg or "openvino/model.fp32.xml" in msg
    assert "output 'cls'" in msg and "< 1.5" in msg
    assert "more, see reports/parity.json" in msg  # every artifact x output breaches


def test_max_abs_bound(tiny_bundle_copy):
    with pytest.raises(ParityError, match="max_abs"):
        edgemm.verify(tiny_bundle_copy, config=VerifyConfig(max_abs=0.0, cosine_min=-1.0, cosine_min_fp16=-1.0), latency=False)


def test_clean_bundle_verifies(tiny_bundle_copy):
    result = edgemm.verify(tiny_bundle_copy, latency=False)
    assert result.breaches == []
    assert "onnx/model.fp32.onnx" in result.parity["artifacts"]
