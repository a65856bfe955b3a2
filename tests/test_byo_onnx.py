"""Bring your own ONNX: ``edgemm export model.onnx`` and ``edgemm bench model.onnx`` / ``model.xml``.

avnet's fp32 ONNX (taken from the session's avnet bundle) goes through real ``python -m edgemm`` processes:
export with --int8 and a calibration file, verify, bench; the working directory is checked before and after,
and the manifest is walked for absolute paths. A recipe whose ``[model] path`` is the ONNX adds what the
graph cannot say (modality, pre-processing, labels).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgemm
from edgemm.errors import EdgemmError, SpecError
from edgemm.modelfile import merge_spec, spec_from_ir, spec_from_onnx

from models.paths import CALIB_NPZ, EVAL_NPZ, RECIPE


def cli(*args, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemm", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def absolute_paths(data, where: str = "") -> list[str]:
    """Every string in a JSON document that is or holds an absolute host path."""
    import re

    found = []
    if isinstance(data, dict):
        for k, v in data.items():
            found += absolute_paths(v, f"{where}.{k}")
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found += absolute_paths(v, f"{where}[{i}]")
    elif isinstance(data, str) and re.search(r"(?<![\w.:/~-])(~?/[^\s/]+/|[A-Za-z]:\\)", data):
        found.append(f"{where}: {data}")
    return found


@pytest.fixture(scope="module")
def avnet_onnx(avnet_bundle_dir, tmp_path_factory) -> Path:
    """avnet's fp32 ONNX as a user would have it: one file, outside any bundle."""
    d = tmp_path_factory.mktemp("byo")
    dst = d / "avnet.onnx"
    shutil.copyfile(avnet_bundle_dir / "onnx" / "model.fp32.onnx", dst)
    return dst


@pytest.fixture(scope="module")
def calib_feeds(tmp_path_factory) -> Path:
    """Calibration data as model-level tensors (the bare ONNX has no pre-processing to apply to raw frames)."""
    from edgemm.data.datasets import load_samples
    from edgemm.recipe import load_recipe

    feeds = load_samples(CALIB_NPZ, load_recipe(RECIPE).spec, limit=120).feeds
    out = tmp_path_factory.mktemp("calib") / "calib-feeds.npz"
    np.savez(out, **feeds)
    return out


def test_spec_from_the_graph(avnet_onnx):
    spec = spec_from_onnx(avnet_onnx)
    assert spec.input_names == ["image", "audio"] and spec.output_names == ["digit", "speaker"]
    assert spec.input("image").shape == ("batch", 3, 64, 64) and spec.input("image").dtype == "float32"
    assert spec.input("audio").shape == ("batch", 1, 64, 98)
    assert spec.output("digit").shape == ("batch", 10)
    assert all(t.modality == "tensor" and t.preprocessing is None for t in spec.inputs)


def test_spec_from_an_openvino_ir(avnet_bundle_dir):
    spec = spec_from_ir(avnet_bundle_dir / "openvino" / "model.fp32.xml")
    assert spec.input_names == ["image", "audio"]
    assert spec.input("image").shape == ("batch", 3, 64, 64)


def test_merge_spec_adds_modality_and_refuses_contradictions(avnet_onnx):
    graph = spec_from_onnx(avnet_onnx)
    spec = merge_spec(graph, [{"name": "image", "modality": "image", "preprocessing": {"size": [64, 64]}}],
                      [{"name": "digit", "labels": [str(i) for i in range(10)]}])
    assert spec.input("image").modality == "image" and spec.input("image").preprocessing.size == (64, 64)
    assert spec.input("image").shape == ("batch", 3, 64, 64)  # from the graph
    assert spec.output("digit").labels[3] == "3"
    with pytest.raises(SpecError, match=r"'imgae', which the graph does not have \(did you mean 'image'\?\)"):
        merge_spec(graph, [{"name": "imgae", "modality": "image"}])
    with pytest.raises(SpecError, match="dtype float32 in the graph, not 'int64'"):
        merge_spec(graph, [{"name": "image", "dtype": "int64"}])
    with pytest.raises(SpecError, match="a fixed dimension of the graph cannot change"):
        merge_spec(graph, [{"name": "image", "shape": ["batch", 3, 32, 32]}])
    renamed = merge_spec(graph, [{"name": "image", "shape": ["n", 3, 64, 64]}, {"name": "audio", "shape": ["n", 1, 64, 98]}])
    assert renamed.input("image").shape[0] == "n"


def test_export_onnx_int8_then_verify(avnet_onnx, calib_feeds, tmp_path):
    """Done-when: `edgemm export model.onnx --int8 --calib F -o B` then `edgemm verify B` pass for avnet's fp32 ONNX; the
    manifest holds no absolute path; the working directory is unchanged after both."""
    work = tmp_path / "cwd"
    work.mkdir()
    (work / "keep.txt").write_text("the user's file\n")
    before = sorted(p.name for p in work.iterdir())
    out = tmp_path / "bundle"
    res = cli("export", avnet_onnx, "--int8", "--calib", calib_feeds, "-o", out, "--target", "onnxruntime", cwd=work)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in work.iterdir()) == before
    b = edgemm.bundle.Bundle.open(out)
    kinds = {(a.backend, a.precision) for a in b.artifacts}
    assert kinds == {("onnxruntime", "fp32"), ("onnxruntime", "int8")}  # no torch reference: the ONNX is the reference
    assert b.manifest["model"]["source"] == "onnx file avnet.onnx"
    assert b.spec.input_names == ["image", "audio"]
    assert absolute_paths(b.manifest) == []
    for rel in b.manifest["reports"].values():
        assert absolute_paths(json.loads((out / rel).read_text())) == [], rel
    parity = json.loads((out / "reports" / "parity.json").read_text())
    assert parity["artifacts"]["onnx/model.fp32.onnx"]["outputs"]["digit"]["max_abs"] == 0.0  # itself
    assert parity["artifacts"]["onnx/model.int8.onnx"]["outputs"]["digit"]["cosine"] > 0.99
    res = cli("verify", out, cwd=work)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "onnx/model.int8.onnx" in res.stdout
    assert sorted(p.name for p in work.iterdir()) == before


def test_recipe_names_the_onnx_and_adds_modalities(avnet_onnx, tmp_path):
    """A small TOML: [model] path = the ONNX, inputs add modality + pre-processing, outputs labels; evaluation data
    with labels gives accuracy against the fp32 ONNX, and Runtime.preprocess takes raw frames and audio."""
    recipe = tmp_path / "avnet-onnx.toml"
    shipped = RECIPE.read_text()
    tables = shipped[shipped.index("[[inputs]]"):shipped.index("[data]")]
    tables = "\n".join(line for line in tables.splitlines() if not line.startswith(("dtype", "shape")))  # the graph says
    recipe.write_text(f'[model]\nname = "avnet-onnx"\npath = "{avnet_onnx}"\n\n{tables}\n'
                      f'[data]\nevaluation = "{EVAL_NPZ}"\n\n[export]\ntargets = ["onnxruntime"]\n')
    b = edgemm.export(recipe, output=tmp_path / "bundle")
    assert b.spec.input("image").modality == "image" and b.spec.input("audio").preprocessing.sample_rate == 16000
    assert b.spec.input("image").shape == ("batch", 3, 64, 64)
    acc = json.loads((b.root / "reports" / "accuracy.json").read_text())
    assert acc["reference"]["backend"] == "onnxruntime" and acc["reference"]["metrics"]["digit"] > 0.9
    assert acc["artifacts"]["onnx/model.fp32.onnx"]["drop"]["digit"] == 0.0
    assert b.manifest["evaluation"]["source"] == "data/evaluation.npz"  # travels with the bundle
    assert absolute_paths(b.manifest) == []
    with np.load(EVAL_NPZ) as z:
        frame, wave, rate = z["image"][0], z["audio"][0], int(z["audio.sample_rate"]) if "audio.sample_rate" in z.files else 8000
    with edgemm.load(b.root) as rt:
        out = rt.run(rt.preprocess(image=frame, audio=(wave, rate)))
    assert out["digit"].shape == (1, 10)


def test_export_refuses_what_needs_the_torch_model(avnet_onnx, tmp_path):
    for flags, said in ((["--qat"], "--qat works on the PyTorch model"), (["--prune", "0.5"], "--prune works on the PyTorch model")):
        res = cli("export", avnet_onnx, *flags, "-o", tmp_path / "b", cwd=tmp_path)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert said in res.stderr and avnet_onnx.name in res.stderr
    with pytest.raises(EdgemmError, match=r"qat=True works on the PyTorch model"):
        edgemm.export(avnet_onnx, output=tmp_path / "b", qat=True)
    assert not (tmp_path / "b").exists()


def test_export_of_an_ir_points_to_onnx_or_bench(avnet_bundle_dir, tmp_path):
    ir = avnet_bundle_dir / "openvino" / "model.fp32.xml"
    with pytest.raises(EdgemmError, match=r"edgemm exports from ONNX.*edgemm bench"):
        edgemm.export(ir, output=tmp_path / "b")


@pytest.mark.parametrize("name", ["onnx/model.fp32.onnx", "openvino/model.fp32.xml"])
def test_bench_a_bare_model_file(avnet_bundle_dir, tmp_path, name):
    src = avnet_bundle_dir / name
    model = tmp_path / Path(name).name
    shutil.copyfile(src, model)
    if model.suffix == ".xml":
        shutil.copyfile(src.with_suffix(".bin"), model.with_suffix(".bin"))
    out = tmp_path / "bench.json"
    res = cli("bench", model, "--batch", "1", "--seconds", "0.2", "--rounds", "1", "--modes", "model", "--json", out,
              cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = json.loads(out.read_text())["runs"]
    backends = {r["backend"] for r in runs}
    assert ("onnxruntime" in backends) == (model.suffix == ".onnx") and "openvino" in backends
    assert all(r["p50_ms"] > 0 and r["precision"] == "fp32" for r in runs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([model.name, "bench.json"]
                                                                + ([model.with_suffix(".bin").name] if model.suffix == ".xml" else []))


def test_quantization_preprocessing_writes_nothing_in_the_working_directory(tmp_path, monkeypatch):
    """ORT's symbolic shape inference saves sym_shape_infer_temp.onnx (+ <uuid>.data) into the working directory when it
    gives up (here: on Col2Im); edgemm runs it inside a temp dir."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgemm.stages.quantize.qdq import preprocess_for_quantization

    w = numpy_helper.from_array(np.ones((4, 512), np.float32), "w")  # > 1 kB: ORT's temp save puts it in a .data file
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Col2Im", ["m", "size", "block"], ["y"])]
    inits = [w, numpy_helper.from_array(np.array([2, 2], np.int64), "size"), numpy_helper.from_array(np.array([1, 1], np.int64), "block")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), src)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    try:
        preprocess_for_quantization(src, tmp_path / "pre.onnx")
    except Exception:  # whether ORT then optimises this toy graph is not the point: what it leaves behind is
        pass
    assert list(work.iterdir()) == []


def test_verify_an_onnx_bundle_against_its_onnx(avnet_onnx, tmp_path):
    """A bundle exported from ONNX has no torch program: --trust-code runs its fp32 ONNX as the reference, every label
    says onnxruntime fp32, and --eval needs no --trust-code (the same data is matched by its bytes; other data runs
    the fp32 ONNX)."""
    from edgemm.errors import command_line
    from edgemm.stages.verify import verify

    recipe = tmp_path / "avnet-onnx.toml"
    shipped = RECIPE.read_text()
    tables = shipped[shipped.index("[[inputs]]"):shipped.index("[data]")]
    tables = "\n".join(line for line in tables.splitlines() if not line.startswith(("dtype", "shape")))
    recipe.write_text(f'[model]\nname = "avnet-onnx"\npath = "{avnet_onnx}"\n\n{tables}\n'
                      f'[data]\nevaluation = "{EVAL_NPZ}"\n\n[export]\ntargets = ["onnxruntime"]\n')
    b = edgemm.export(recipe, output=tmp_path / "bundle")
    assert b.manifest["evaluation"]["source"] == "data/evaluation.npz"
    with command_line():
        trusted = verify(b.root, trust_code=True, latency=False, threads=2)
    assert trusted.parity["reference"] == "onnx/model.fp32.onnx (onnxruntime fp32)"
    assert trusted.accuracy["reference"]["backend"] == "onnxruntime" and trusted.accuracy["reference"]["metrics"]["digit"] > 0.9
    assert "reference onnxruntime fp32" in trusted.summary() and "torch" not in trusted.summary()
    stored = verify(b.root, latency=False, threads=2)
    assert "onnxruntime fp32 reference stored at export" in stored.parity["reference"]
    assert stored.accuracy["reference"]["backend"] == "onnxruntime"
    # the same evaluation data by another path (the user's file): the same bytes, so the stored reference holds
    again = verify(b.root, evaluation=EVAL_NPZ, latency=False, threads=2)
    assert again.accuracy["reference"]["metrics"] == stored.accuracy["reference"]["metrics"]
    other = tmp_path / "other-eval.npz"
    with np.load(EVAL_NPZ) as z:
        np.savez(other, **{k: z[k][:50] if z[k].ndim else z[k] for k in z.files})
    # other data: the fp32 ONNX is run on it (no torch program to trust)
    fresh = verify(b.root, evaluation=other, latency=False, threads=2)
    assert fresh.accuracy["samples"] == 50 and fresh.parity["reference"] == "onnx/model.fp32.onnx (onnxruntime fp32)"
