"""Bundle: manifest on disk, sha256 of every artifact file, atomic writes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgemm
from edgemm.bundle import MANIFEST, Bundle, sha256_file
from edgemm.errors import BundleError, EdgemmError, ParityError
from edgemm.recipe import VerifyConfig

from models.tiny import RaisingAV, tiny_feeds, tiny_spec


def _manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def _write_manifest(root: Path, m: dict) -> None:
    (root / MANIFEST).write_text(json.dumps(m))


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_open_checks_every_file(tiny_bundle_dir):
    b = Bundle.open(tiny_bundle_dir)
    assert b.name == "tinyav"
    for art in b.artifacts:
        assert art.files, art.path
        for rel, digest in art.files.items():
            assert sha256_file(tiny_bundle_dir / rel) == digest
        assert art.sha256 == art.files[art.path]
    paths = {a.path for a in b.artifacts}
    assert {"reference/model.pt2", "onnx/model.fp32.onnx"} <= paths


@pytest.mark.parametrize("rel", ["onnx/model.fp32.onnx", "reference/model.pt2"])
def test_tampered_artifact_byte(tiny_bundle_copy, rel):
    _flip_byte(tiny_bundle_copy / rel)
    with pytest.raises(BundleError) as exc:
        Bundle.open(tiny_bundle_copy)
    assert rel in str(exc.value) and "sha256" in str(exc.value)
    Bundle.open(tiny_bundle_copy, verify_hashes=False)  # the manifest itself is fine


@pytest.mark.openvino
def test_tampered_companion_file(tiny_bundle_copy):
    """The .bin beside an OpenVINO .xml is hashed too (an artifact is all of its files)."""
    _flip_byte(tiny_bundle_copy / "openvino/model.fp32.bin")
    with pytest.raises(BundleError, match="openvino/model.fp32.bin"):
        Bundle.open(tiny_bundle_copy)


def test_missing_artifact_file(tiny_bundle_copy):
    (tiny_bundle_copy / "onnx/model.fp32.onnx").unlink()
    with pytest.raises(BundleError) as exc:
        Bundle.open(tiny_bundle_copy)
    assert "onnx/model.fp32.onnx" in str(exc.value) and "missing" in str(exc.value)


def test_corrupt_manifest_json(tiny_bundle_copy):
    text = (tiny_bundle_copy / MANIFEST).read_text()
    (tiny_bundle_copy / MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(BundleError) as exc:
        Bundle.open(tiny_bundle_copy)
    assert "corrupt" in str(exc.value)
    (tiny_bundle_copy / MANIFEST).write_text("[1, 2]")
    with pytest.raises(BundleError, match="not a JSON object"):
        Bundle.open(tiny_bundle_copy)


@pytest.mark.parametrize("key", ["artifacts", "inputs", "format_version", "reports"])
def test_missing_manifest_key(tiny_bundle_copy, key):
    m = _manifest(tiny_bundle_copy)
    del m[key]
    _write_manifest(tiny_bundle_copy, m)
    with pytest.raises(BundleError) as exc:
        Bundle.open(tiny_bundle_copy)
    assert key in str(exc.value)


def test_rehashed_artifact_entry_tampering(tiny_bundle_copy):
    """Editing the manifest's recorded hash (without the file) is caught too."""
    m = _manifest(tiny_bundle_copy)
    m["artifacts"][1]["files"][m["artifacts"][1]["path"]] = "0" * 64
    _write_manifest(tiny_bundle_copy, m)
    with pytest.raises(BundleError, match="sha256"):
        Bundle.open(tiny_bundle_copy)


def test_malformed_artifact_entry_and_format(tiny_bundle_copy):
    m = _manifest(tiny_bundle_copy)
    m["artifacts"][0]["colour"] = "blue"
    _write_manifest(tiny_bundle_copy, m)
    with pytest.raises(BundleError, match="malformed artifact"):
        Bundle.open(tiny_bundle_copy)
    m = _manifest(tiny_bundle_copy)
    del m["artifacts"][0]["colour"]
    m["format_version"] = 99
    _write_manifest(tiny_bundle_copy, m)
    with pytest.raises(BundleError, match="format 99"):
        Bundle.open(tiny_bundle_copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.open(tmp_path / "nothing")
    with pytest.raises(BundleError, match="no manifest.json"):
        Bundle.open(tmp_path)


def test_select_filters_and_hints(tiny_bundle_dir):
    b = Bundle.open(tiny_bundle_dir)
    assert [a.path for a in b.select(backend="onnxruntime")] == ["onnx/model.fp32.onnx"]
    assert all(a.precision == "fp32" for a in b.select(precision="fp32"))
    assert b.graphs() == ["main"]
    with pytest.raises(BundleError) as exc:
        b.select(backend="onnxruntim")
    assert "did you mean 'onnxruntime'" in str(exc.value)
    with pytest.raises(BundleError, match="did you mean 'fp16'"):
        b.select(precision="fp61")
    with pytest.raises(BundleError, match="no graph 'text'"):
        b.select(graph="text")
    assert b.artifact_id(b.select(backend="onnxruntime")[0]) == "onnx/model.fp32.onnx"


def test_output_that_is_not_a_bundle_is_refused(tmp_path, tiny_model):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="not an edgemm bundle"):
        edgemm.export(tiny_model(), example_inputs=tiny_feeds(), output=out, targets=["onnxruntime"])
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert _leftovers(tmp_path, "precious") == []


def test_failed_export_leaves_nothing_behind(tmp_path):
    """A model whose forward raises (with an explicit spec the first run is inside the bundle writer)."""
    out = tmp_path / "bundle"
    with pytest.raises(EdgemmError, match="RaisingAV.forward fails on the example inputs.*RuntimeError: boom"):
        edgemm.export(RaisingAV(), example_inputs=tiny_feeds(), spec=tiny_spec(), output=out, targets=["onnxruntime"])
    assert list(tmp_path.iterdir()) == []


def test_bogus_evaluation_path_leaves_nothing_behind(tmp_path, tiny_model):
    out = tmp_path / "bundle"
    with pytest.raises(EdgemmError, match="not found"):
        edgemm.export(tiny_model(), example_inputs=tiny_feeds(), output=out, evaluation=tmp_path / "nope.npz")
    assert list(tmp_path.iterdir()) == []


def test_parity_breach_during_export_keeps_the_old_bundle(tmp_path, tiny_bundle_dir, tiny_model):
    """A breach at export time: ParityError, no temp dir, and an existing bundle at -o is untouched."""
    import shutil

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, out)
    before = (out / MANIFEST).read_bytes()
    with pytest.raises(ParityError) as exc:
        edgemm.export(tiny_model(seed=5), example_inputs=tiny_feeds(), output=out, targets=["onnxruntime"],
                      verify_config=VerifyConfig(cosine_min=1.5))
    msg = str(exc.value)  # at export time the torch artifact is checked against the live module too
    assert ("reference/model.pt2" in msg or "onnx/model.fp32.onnx" in msg) and "output 'output_0'" in msg
    assert (out / MANIFEST).read_bytes() == before
    Bundle.open(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_export_replaces_an_existing_bundle(tmp_path, tiny_bundle_dir, tiny_model):
    import shutil

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, out)
    b = edgemm.export(tiny_model(seed=3), example_inputs=tiny_feeds(), output=out, targets=["onnxruntime"])
    assert {a.backend for a in b.artifacts} == {"torch", "onnxruntime"}  # the old openvino files are gone
    assert not (out / "openvino").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_write_report_is_recorded(tiny_bundle_copy):
    b = Bundle.open(tiny_bundle_copy)
    b.write_report("latency", {"runs": []})
    assert _manifest(tiny_bundle_copy)["reports"]["latency"] == "reports/latency.json"
    assert Bundle.open(tiny_bundle_copy).report("latency") == {"runs": []}
    (tiny_bundle_copy / "reports/latency.json").write_text("{nope")
    with pytest.raises(BundleError, match="corrupt"):
        Bundle.open(tiny_bundle_copy).report("latency")


def test_bundle_permissions_follow_the_umask(tiny_bundle_dir):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    if umask & 0o044:
        pytest.skip(f"umask {umask:03o} hides files from group/others anyway")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tiny_bundle_dir) == 0o777 & ~umask
    assert mode(tiny_bundle_dir / MANIFEST) == 0o666 & ~umask
    for rel in Bundle.open(tiny_bundle_dir).manifest["reports"].values():
        assert mode(tiny_bundle_dir / rel) == 0o666 & ~umask
