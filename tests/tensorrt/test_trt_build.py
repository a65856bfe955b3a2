"""TensorRT engines built and run for real on the reference avnet bundle (fp32, fp16, int8 from the Q/DQ model), on a
two-graph bundle, and rebuilt when the recorded GPU does not match; every engine compared with ONNX Runtime on the
same bundle. They need TensorRT and an NVIDIA GPU: elsewhere they are collected and skipped (the reason is given by
the `trt_device` fixture), never hidden."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt, pytest.mark.slow]


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


@pytest.fixture(scope="module")
def trt_device():
    """The TensorRT availability of this machine; skips with the reason and the install command where it has none."""
    from edgemm.backends.registry import get_backend

    av = get_backend("tensorrt").availability()
    if not av.available:
        pytest.skip(f"TensorRT engines need TensorRT and an NVIDIA GPU: {av.reason} (install: {av.install})")
    return av


@pytest.fixture(scope="module")
def trt_bundle(trt_device, tmp_path_factory):
    """The shipped avnet recipe exported for onnxruntime and tensorrt, with the TensorRT-valid int8 Q/DQ model."""
    import edgemm
    from models.paths import RECIPE

    out = tmp_path_factory.mktemp("trt") / "avnet"
    edgemm.export(str(RECIPE), output=out, int8=True, targets=["onnxruntime", "tensorrt"], verify=False, speed_guard=False)
    return out


@pytest.fixture
def trt_cache(tmp_path, monkeypatch):
    """Engines rebuilt on load go to the user cache: a private one per test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "edgemm" / "tensorrt"


def _runner(bundle, art, backend_name):
    from edgemm.backends.base import RunnerOptions
    from edgemm.backends.registry import get_backend

    return get_backend(backend_name).create_runner(bundle.root / art.path, bundle.specs[art.graph], RunnerOptions(device="cuda"))


def _compare(bundle, engine_art, onnx_art, min_cos, batches=(1, 3)):
    """Run the engine and ONNX Runtime on the same feeds; return the worst cosine and the top-1 agreement."""
    spec = bundle.specs[engine_art.graph]
    trt, ort = _runner(bundle, engine_art, "tensorrt"), _runner(bundle, onnx_art, "onnxruntime")
    worst, agree = 1.0, []
    try:
        for batch in batches:
            feeds = spec.example_feeds(batch=batch, seed=batch)
            got, want = trt.infer(feeds), ort.infer(feeds)
            assert list(got) == spec.output_names
            for name in spec.output_names:
                assert got[name].shape == want[name].shape and got[name].dtype == want[name].dtype
                worst = min(worst, _cos(got[name], want[name]))
                if got[name].ndim == 2:
                    agree.append(np.mean(got[name].argmax(1) == want[name].argmax(1)))
    finally:
        trt.close()
    assert worst >= min_cos, f"{engine_art.path}: cosine {worst:.5f} vs onnxruntime"
    return worst, float(np.mean(agree)) if agree else 1.0


def _one(bundle, **kw):
    arts = [a for a in bundle.artifacts if all(getattr(a, k) == v for k, v in kw.items())]
    assert len(arts) == 1, (kw, [a.path for a in bundle.artifacts])
    return arts[0]


def test_fp32_engine_builds_records_its_device_and_matches_onnxruntime(trt_bundle, trt_device, tmp_path):
    import shutil

    import edgemm

    b_dir = tmp_path / "b"
    shutil.copytree(trt_bundle, b_dir)
    bundle = edgemm.compile(b_dir, "tensorrt", precision="fp32", threads=4)  # verified like every artifact
    art = _one(bundle, backend="tensorrt", format="tensorrt-plan", precision="fp32")
    rec = art.extra["tensorrt"]
    assert rec["version"] == trt_device.version.split("+")[0][: len(rec["version"])]
    assert rec["compute_capability"] in trt_device.devices[0] and rec["precision"] == "fp32" and rec["profiles"]
    assert "TF32" in rec["build"]["clear_flags"]
    assert rec["timing_cache"] and any(f.endswith(rec["timing_cache"]) for f in art.files)
    side = json.loads((b_dir / art.path).with_suffix(".json").read_text())["tensorrt"]
    assert side["source"] == "onnx/model.fp32.onnx" and side["compute_capability"] == rec["compute_capability"]
    parity = json.loads((b_dir / "reports" / "parity.json").read_text())["artifacts"][art.path]
    assert min(o["cosine"] for o in parity["outputs"].values()) >= 0.9999
    _compare(bundle, art, _one(bundle, backend="onnxruntime", format="onnx", precision="fp32"), 0.9999)
    # compiling again reuses the saved timing cache and replaces the engine
    bundle = edgemm.compile(b_dir, "tensorrt", precision="fp32", verify=False)
    assert len([a for a in bundle.artifacts if a.format == "tensorrt-plan" and a.precision == "fp32"]) == 1


def test_fp16_engine_keeps_its_fp32_parts_and_matches_onnxruntime(trt_bundle, tmp_path):
    import shutil

    import edgemm

    b_dir = tmp_path / "b"
    shutil.copytree(trt_bundle, b_dir)
    bundle = edgemm.compile(b_dir, "tensorrt", precision="fp16", verify=False)
    art = _one(bundle, backend="tensorrt", format="tensorrt-plan", precision="fp16")
    rec = art.extra["tensorrt"]
    if rec["build"]["strongly_typed"]:  # TensorRT 11: built from edgemm's fp16 graph
        assert rec["build"]["source"] == "fp16-cast" and rec["fp16"]["fp16_nodes"] > 0 and rec["fp16"]["fp32_nodes"]
    else:  # TensorRT 10: the fp32 graph with the FP16 builder flag
        assert "FP16" in rec["build"]["set_flags"] and rec["build"]["pin_fp32_layers"]
    _, agreement = _compare(bundle, art, _one(bundle, backend="onnxruntime", format="onnx", precision="fp32"), 0.999)
    assert agreement >= 0.95


def test_int8_engine_from_the_qdq_model_matches_onnxruntime_on_the_same_model(trt_bundle, tmp_path):
    import shutil

    import edgemm

    b_dir = tmp_path / "b"
    shutil.copytree(trt_bundle, b_dir)
    bundle = edgemm.compile(b_dir, "tensorrt", precision="int8", verify=False)
    art = _one(bundle, backend="tensorrt", format="tensorrt-plan", precision="int8")
    assert art.extra["source"].startswith("tensorrt/") and art.extra["tensorrt"]["build"]["source"] == "qdq"
    qdq = next(a for a in bundle.artifacts if a.format == "onnx" and a.precision == "int8" and a.backend == "onnxruntime"
               and a.target == "tensorrt")
    _, agreement = _compare(bundle, art, qdq, 0.98)
    assert agreement >= 0.9


def test_every_graph_of_a_two_graph_bundle_gets_its_engine(trt_device, tmp_path):
    import torch
    from torch import nn

    import edgemm

    class Image(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 6)

        def forward(self, image):
            return self.fc(torch.relu(self.conv(image)).mean(dim=(2, 3)))

    class Text(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.fc = nn.Embedding(50, 8), nn.Linear(8, 6)

        def forward(self, tokens):
            return self.fc(self.emb(tokens).mean(dim=1))

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    examples = {"image": {"image": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)},
                "text": {"tokens": rng.integers(0, 50, (2, 7)).astype(np.int64)}}
    out = tmp_path / "two"
    edgemm.export({"image": Image().eval(), "text": Text().eval()}, example_inputs=examples, output=out,
                  targets=["onnxruntime", "tensorrt"], verify=False)
    bundle = edgemm.compile(out, "tensorrt", precision="fp32", verify=False)
    for graph in ("image", "text"):
        art = _one(bundle, backend="tensorrt", format="tensorrt-plan", graph=graph)
        assert art.path.startswith(f"graphs/{graph}/tensorrt/") or graph == "main"
        onnx_art = _one(bundle, backend="onnxruntime", format="onnx", precision="fp32", graph=graph)
        _compare(bundle, art, onnx_art, 0.9999)


def test_an_engine_recorded_for_another_gpu_is_rebuilt_on_load_or_refused(trt_bundle, trt_cache, tmp_path):
    import shutil

    import edgemm
    from edgemm.errors import BundleError

    b_dir = tmp_path / "b"
    shutil.copytree(trt_bundle, b_dir)
    bundle = edgemm.compile(b_dir, "tensorrt", precision="fp32", verify=False)
    art = _one(bundle, backend="tensorrt", format="tensorrt-plan", precision="fp32")
    side = (b_dir / art.path).with_suffix(".json")
    data = json.loads(side.read_text())
    data["tensorrt"]["compute_capability"] = "1.0"  # as if built on another GPU
    side.write_text(json.dumps(data))
    onnx_art = _one(bundle, backend="onnxruntime", format="onnx", precision="fp32")
    _compare(bundle, art, onnx_art, 0.9999)
    rebuilt = list(trt_cache.glob("*.plan"))
    assert len(rebuilt) == 1 and (b_dir / art.path).read_bytes() != b""  # rebuilt into the user cache, bundle untouched
    data["tensorrt"]["options"]["rebuild"] = False
    side.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="rebuilding is turned off"):
        _runner(bundle, art, "tensorrt")


def test_cuda_graph_replay_and_batch_changes_give_the_plain_results(trt_bundle, tmp_path):
    import shutil

    import edgemm
    from edgemm.backends.tensorrt.runner import TensorRTRunner

    b_dir = tmp_path / "b"
    shutil.copytree(trt_bundle, b_dir)
    bundle = edgemm.compile(b_dir, "tensorrt", precision="fp32", verify=False)
    art = _one(bundle, backend="tensorrt", format="tensorrt-plan", precision="fp32")
    engine = (b_dir / art.path).read_bytes()
    plain = TensorRTRunner(engine, bundle.spec, cuda_graph=False)
    graphed = TensorRTRunner(engine, bundle.spec, cuda_graph=True)
    try:
        for batch in (1, 1, 4, 4, 1):
            feeds = bundle.spec.example_feeds(batch=batch, seed=batch)
            a, b = plain.infer(feeds), graphed.infer(feeds)
            for name in a:
                np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5)
    finally:
        plain.close()
        graphed.close()
