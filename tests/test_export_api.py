"""edgemm.export on a live nn.Module (spec inferred / explicit) and on a torch.export .pt2 file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgemm
from edgemm.bundle import Bundle, sha256_file
from edgemm.errors import EdgemmError, SpecError

from models.tiny import AUDIO_SHAPE, IMAGE_SHAPE, TinyAV, tiny_feeds, tiny_spec, torch_outputs

OV = pytest.param("openvino", marks=pytest.mark.openvino)
ARTIFACT_KEYS = {"path", "sha256", "format", "precision", "backend", "target", "toolchain"}


def _parity(root: Path) -> dict:
    return json.loads((root / "reports/parity.json").read_text())


def _check_parity(root: Path, outputs: list[str], backends=("onnxruntime", "openvino")):
    parity = _parity(root)
    assert parity["samples"] > 0
    seen = set()
    for aid, entry in parity["artifacts"].items():
        if entry["precision"] != "fp32" or entry["backend"] not in backends:
            continue
        seen.add(entry["backend"])
        assert set(entry["outputs"]) == set(outputs), aid
        for name, st in entry["outputs"].items():
            assert {"max_abs", "mean_abs", "cosine"} <= set(st)
            assert st["cosine"] >= 0.9999, (aid, name, st)
            assert st["max_abs"] < 1e-3, (aid, name, st)
    want = {"onnxruntime"} | ({"openvino"} if "openvino" in backends and edgemm_has_openvino() else set())
    assert want <= seen


def edgemm_has_openvino() -> bool:
    from edgemm.backends.registry import get_backend

    return get_backend("openvino").availability().available


def _run_batches(root: Path, backend: str, model, batches=(1, 3)):
    for n in batches:
        feeds = tiny_feeds(n, seed=10 + n)
        with edgemm.load(root, backend=backend, precision="fp32", trust_code=True) as rt:
            out = rt.run(feeds)
        want = torch_outputs(model, feeds)
        assert [o.shape[0] for o in out.values()] == [n, n]
        for got, ref in zip(out.values(), want):
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ nn.Module + example_inputs


@pytest.fixture(scope="module")
def inferred_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("inferred") / "bundle"
    model = TinyAV(1)
    b = edgemm.export(model, example_inputs=tiny_feeds(1), output=out)  # batch-1 example: batch must stay dynamic
    return b, model


def test_inferred_spec(inferred_bundle):
    b, _ = inferred_bundle
    assert b.spec.input_names == ["image", "audio"]
    assert b.spec.input("image").shape == ("batch", *IMAGE_SHAPE)
    assert b.spec.input("audio").shape == ("batch", *AUDIO_SHAPE)
    assert b.spec.output_names == ["output_0", "output_1"]
    assert b.spec.outputs[0].shape == ("batch", 4)
    assert b.manifest["model"]["source"].endswith("TinyAV")


def test_inferred_parity_report(inferred_bundle):
    b, _ = inferred_bundle
    _check_parity(b.root, ["output_0", "output_1"])
    assert "random" in b.manifest["parity_samples"]["source"]  # no evaluation data: said so
    assert b.report("accuracy") is None and "accuracy" not in b.manifest["reports"]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", OV])
def test_inferred_dynamic_batch(inferred_bundle, backend):
    b, model = inferred_bundle
    _run_batches(b.root, backend, model)


def test_example_inputs_in_any_order(tmp_path):
    """Names, not dict order, decide which tensor is which forward() argument."""
    f = tiny_feeds(2)
    b = edgemm.export(TinyAV(2), example_inputs={"audio": f["audio"], "image": f["image"]}, output=tmp_path / "b",
                      targets=["onnxruntime"])
    assert b.spec.input_names == ["image", "audio"]
    with edgemm.load(b.root, backend="onnxruntime") as rt:
        out = rt.run({"audio": f["audio"], "image": f["image"]})
    np.testing.assert_allclose(out["output_0"], torch_outputs(TinyAV(2), f)[0], rtol=1e-4, atol=1e-5)


def test_example_input_that_is_not_a_parameter(tmp_path):
    f = tiny_feeds(2)
    with pytest.raises(SpecError, match="not parameters"):
        edgemm.export(TinyAV(), example_inputs={"img": f["image"], "audio": f["audio"]}, output=tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_module_without_spec_or_examples(tmp_path):
    with pytest.raises(SpecError, match="example_inputs"):
        edgemm.export(TinyAV(), output=tmp_path / "b")


def test_not_a_model(tmp_path):
    with pytest.raises(EdgemmError, match="cannot export"):
        edgemm.export(42, output=tmp_path / "b")
    with pytest.raises(EdgemmError, match="not found"):
        edgemm.export(tmp_path / "missing.onnx", output=tmp_path / "b")


def test_a_bad_prune_request_is_clear_and_writes_nothing(tmp_path):
    from edgemm.errors import EdgemmError

    with pytest.raises(EdgemmError, match=r"outside \(0, 1\)"):  # pruning has landed: its input is checked first
        edgemm.export(TinyAV(), example_inputs=tiny_feeds(), output=tmp_path / "b", prune=1.3)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ explicit IOSpec


def test_explicit_spec_manifest(tiny_bundle_dir):
    m = json.loads((tiny_bundle_dir / "manifest.json").read_text())
    for key in ("format_version", "edgemm_version", "model", "inputs", "outputs", "artifacts", "calibration", "reports"):
        assert key in m, key
    assert m["edgemm_version"] == edgemm.__version__
    assert set(m["model"]) >= {"name", "source", "sha256"} and len(m["model"]["sha256"]) == 64
    for t in m["inputs"]:
        assert set(t) >= {"name", "modality", "dtype", "shape", "preprocessing"}
        assert t["shape"][0] == "batch" and t["dtype"] == "float32"
    for t in m["outputs"]:
        assert set(t) >= {"name", "dtype", "shape", "labels"}
    assert [t["name"] for t in m["outputs"]] == ["cls", "spk"]
    assert m["outputs"][0]["labels"] == ["a", "b", "c", "d"]
    assert set(m["calibration"]) >= {"source", "sha256", "samples", "method"}
    for a in m["artifacts"]:
        assert ARTIFACT_KEYS <= set(a), a
        assert a["precision"] in ("fp32", "fp16", "int8")
        assert a["backend"] in ("torch", "onnxruntime", "openvino", "tensorrt")
        assert isinstance(a["toolchain"], dict) and a["toolchain"]
        assert not Path(a["path"]).is_absolute() and (tiny_bundle_dir / a["path"]).is_file()
    for key, rel in m["reports"].items():
        assert key in ("parity", "accuracy", "latency")
        assert not Path(rel).is_absolute() and (tiny_bundle_dir / rel).is_file()
    assert {"parity", "latency"} <= set(m["reports"])
    formats = {(a["backend"], a["precision"]): a["format"] for a in m["artifacts"]}
    assert formats[("torch", "fp32")] == "torch-export"
    assert formats[("onnxruntime", "fp32")] == "onnx"
    if edgemm_has_openvino():
        assert formats[("openvino", "fp32")] == formats[("openvino", "fp16")] == "openvino-ir"


def test_explicit_spec_parity_and_labels(tiny_bundle_dir):
    _check_parity(tiny_bundle_dir, ["cls", "spk"])
    with edgemm.load(tiny_bundle_dir, backend="onnxruntime") as rt:
        out = rt.run(tiny_feeds(2))
        labels = rt.labels(out)
    assert list(out) == ["cls", "spk"]
    assert set(labels) == {"cls", "spk"} and len(labels["cls"]) == 2
    for (label, score), logits in zip(labels["cls"], out["cls"]):
        assert label == "abcd"[int(logits.argmax())] and 0 < score <= 1


@pytest.mark.parametrize("backend", ["onnxruntime", OV])
def test_explicit_spec_dynamic_batch(tiny_bundle_dir, backend):
    _run_batches(tiny_bundle_dir, backend, TinyAV(0))


# ------------------------------------------------------------------ torch.export .pt2


@pytest.fixture(scope="module")
def pt2_bundle(tmp_path_factory):
    import torch

    d = tmp_path_factory.mktemp("pt2")
    model = TinyAV(4)
    f = tiny_feeds(2)
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (torch.from_numpy(f["image"]), torch.from_numpy(f["audio"])),
                             dynamic_shapes={"image": {0: batch}, "audio": {0: batch}})
    path = d / "tiny.pt2"
    torch.export.save(ep, str(path))
    return edgemm.export(path, output=d / "bundle"), model, path


def test_pt2_input_names_are_forward_parameters(pt2_bundle):
    b, _, path = pt2_bundle
    assert b.spec.input_names == ["image", "audio"]
    assert b.spec.input("image").shape == ("batch", *IMAGE_SHAPE)
    assert b.spec.input("audio").shape == ("batch", *AUDIO_SHAPE)
    assert len(b.spec.output_names) == 2
    from edgemm.bundle import sha256_file

    assert b.manifest["model"]["sha256"] == sha256_file(path)
    assert b.manifest["model"]["name"] == "tiny"


def test_pt2_parity(pt2_bundle):
    b, _, _ = pt2_bundle
    _check_parity(b.root, b.spec.output_names)


@pytest.mark.parametrize("backend", ["onnxruntime", OV])
def test_pt2_dynamic_batch(pt2_bundle, backend):
    b, model, _ = pt2_bundle
    _run_batches(b.root, backend, model)


def test_bad_pt2(tmp_path):
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(EdgemmError, match="torch.export"):
        edgemm.export(bad, output=tmp_path / "b")
    with pytest.raises(EdgemmError, match="not found"):
        edgemm.export(tmp_path / "missing.pt2", output=tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt2"]


# ------------------------------------------------------------------ a bundle travels: no host paths


def _host_paths(data, where: str = "") -> list[str]:
    import re

    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _host_paths(v, f"{where}.{k}")]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _host_paths(v, f"{where}[{i}]")]
    return [f"{where}: {data}"] if isinstance(data, str) and re.search(r"(?<![\w.:/~-])(~?/[^\s/]+/|[A-Za-z]:\\)", data) else []


def test_manifest_and_reports_hold_no_absolute_paths(avnet_bundle_dir):
    import json

    from edgemm.bundle import resolve_file_ref
    from edgemm.reference import torch_reference_plan

    m = json.loads((avnet_bundle_dir / "manifest.json").read_text())
    assert _host_paths(m) == []
    for rel in m["reports"].values():
        assert _host_paths(json.loads((avnet_bundle_dir / rel).read_text())) == [], rel
    # the zoo checkpoint is named inside the installed package, and found again from there
    assert m["model"]["checkpoint"] == "edgemm:zoo/checkpoints/avnet.pt"
    assert resolve_file_ref(m["model"]["checkpoint"]) == Path(edgemm.__file__).parent / "zoo" / "checkpoints" / "avnet.pt"
    plan = torch_reference_plan(edgemm.bundle.Bundle.open(avnet_bundle_dir))
    assert plan["kind"] == "factory" and Path(plan["checkpoint"]).is_file()  # the bench baseline still builds
    # the evaluation data travels inside the bundle (verify and bench find it wherever the bundle goes)
    from models.paths import EVAL_NPZ

    assert m["evaluation"]["source"] == "data/evaluation.npz" and m["evaluation"]["sha256"] == sha256_file(EVAL_NPZ)
    assert sha256_file(avnet_bundle_dir / "data" / "evaluation.npz") == m["evaluation"]["sha256"]
    assert m["calibration"]["source"] in (None, "calib.npz")


def test_without_host_paths_keeps_relative_paths_ratios_and_urls():
    from edgemm.bundle import without_host_paths

    assert without_host_paths({"a": ["first 32 samples of /data/x/eval.npz", "recipe /abs/avnet.toml"]}) == \
        {"a": ["first 32 samples of eval.npz", "recipe avnet.toml"]}
    kept = ["onnx/model.fp32.onnx", "3/4", "http://host/a/b", "edgemm:zoo/checkpoints/avnet.pt", "x1.2/fp32", "/"]
    assert without_host_paths(kept) == kept
    assert without_host_paths("C:\\Users\\me\\m.onnx and ~/data/e.npz") == "m.onnx and e.npz"
