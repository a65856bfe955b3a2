"""End to end on the shipped model: export (session fixture) -> verify both backends -> reload -> run."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgemm
from edgemm.bundle import Bundle

from models.paths import ROOT

OV = pytest.param("openvino", marks=pytest.mark.openvino)
N_SAMPLES = 12


@pytest.fixture(scope="module")
def manifest(avnet_bundle_dir):
    return json.loads((avnet_bundle_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def report(avnet_bundle_dir, manifest):
    def read(key):
        return json.loads((avnet_bundle_dir / manifest["reports"][key]).read_text())

    return read


def test_bundle_layout_and_manifest(avnet_bundle_dir, manifest):
    b = Bundle.open(avnet_bundle_dir)  # every hash checks out
    assert manifest["model"]["name"] == "avnet"
    from edgemm.bundle import sha256_file

    assert manifest["model"]["sha256"] == sha256_file(ROOT / "edgemm/zoo/checkpoints/avnet.pt")
    assert [t["name"] for t in manifest["inputs"]] == ["image", "audio"]
    assert [t["modality"] for t in manifest["inputs"]] == ["image", "audio"]
    assert manifest["inputs"][0]["shape"] == ["batch", 3, 64, 64]
    assert manifest["inputs"][1]["shape"] == ["batch", 1, 64, 98]
    assert manifest["inputs"][1]["preprocessing"]["sample_rate"] == 16000
    assert [t["name"] for t in manifest["outputs"]] == ["digit", "speaker"]
    assert manifest["outputs"][1]["labels"] == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    assert set(manifest["reports"]) >= {"parity", "accuracy", "latency"}
    have = {(a.backend, a.precision) for a in b.artifacts}
    assert {("torch", "fp32"), ("onnxruntime", "fp32")} <= have
    from edgemm.backends.registry import get_backend

    if get_backend("openvino").availability().available:
        assert {("openvino", "fp32"), ("openvino", "fp16")} <= have


@pytest.mark.parametrize("backend", ["onnxruntime", OV])
def test_parity_fp32(report, backend):
    parity = report("parity")
    assert parity["samples"] == 32
    entries = [e for e in parity["artifacts"].values() if e["backend"] == backend and e["precision"] == "fp32"]
    assert len(entries) == 1
    for name in ("digit", "speaker"):
        st = entries[0]["outputs"][name]
        assert st["cosine"] >= 0.9999, (name, st)
        assert st["max_abs"] < 1e-3 and st["mean_abs"] <= st["max_abs"]


def test_accuracy_report(report, manifest):
    acc = report("accuracy")
    assert acc["split"] == "eval" and acc["samples"] == 600
    assert acc["reference"]["backend"] == "torch" and acc["reference"]["precision"] == "fp32"
    ref = acc["reference"]["metrics"]
    shipped = json.loads((ROOT / "edgemm/zoo/checkpoints/avnet.json").read_text())["eval"]
    assert ref["digit"] == pytest.approx(shipped["digit_top1_fused"], abs=2e-3)
    assert ref["speaker"] == pytest.approx(shipped["speaker_top1"], abs=2e-3)
    assert isinstance(acc["sensitivity"], list)
    paths = {a["path"] for a in manifest["artifacts"]}
    fp32 = 0
    for aid, a in acc["artifacts"].items():
        assert {"path", "backend", "precision", "target", "method", "kept_float", "metrics", "drop"} <= set(a), aid
        assert a["path"] in paths
        for head in ("digit", "speaker"):
            assert 0.0 <= a["metrics"][head] <= 1.0
            assert a["drop"][head] == pytest.approx(ref[head] - a["metrics"][head])
        if a["precision"] == "fp32":
            fp32 += 1
            assert a["method"] == "fp32"
            assert a["metrics"]["digit"] >= 0.90, aid
            assert abs(a["drop"]["digit"]) <= 0.005, aid
    assert fp32 >= 2


def test_the_model_fuses_both_modalities(report):
    """Blanking either input costs accuracy: the shipped model really uses camera and microphone."""
    acc = report("accuracy")
    ref = acc["reference"]["metrics"]["digit"]
    ablation = acc.get("ablation", {})
    assert len(ablation) == 2
    for name, metrics in ablation.items():
        assert metrics["digit"] < ref - 0.03, name


def test_latency_report(report):
    lat = report("latency")
    assert lat["batch"] == 1 and lat["runs"]
    baseline = [r for r in lat["runs"] if r["baseline"]]
    assert len(baseline) == 1 and baseline[0]["backend"] == "torch"
    for r in lat["runs"]:
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]


# ------------------------------------------------------------------ reload and run


@pytest.fixture(scope="module")
def predictions(avnet_bundle_dir, eval_arrays):
    """digit/speaker logits per backend for N eval samples through Runtime.preprocess + Runtime.run."""
    from edgemm.backends.registry import get_backend

    out = {}
    for backend in ("torch", "onnxruntime", "openvino"):
        if not get_backend(backend).availability().available:
            continue
        with edgemm.load(avnet_bundle_dir, backend=backend, precision="fp32", trust_code=True) as rt:
            assert rt.backend == backend and rt.precision == "fp32"
            rows = []
            for i in range(N_SAMPLES):
                feeds = rt.preprocess(image=eval_arrays["image"][i], audio=(eval_arrays["audio"][i], 8000))
                rows.append(rt.run(feeds))
            out[backend] = {k: np.concatenate([r[k] for r in rows]) for k in ("digit", "speaker")}
    return out


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", OV])
def test_runtime_predicts_the_labels(predictions, eval_arrays, backend):
    digits = predictions[backend]["digit"].argmax(-1)
    assert (digits == eval_arrays["digit"][:N_SAMPLES]).sum() >= N_SAMPLES - 2
    speakers = predictions[backend]["speaker"].argmax(-1)
    assert (speakers == eval_arrays["speaker"][:N_SAMPLES]).sum() >= N_SAMPLES - 3


def test_backends_agree(predictions):
    assert {"torch", "onnxruntime"} <= set(predictions)
    ref = predictions["torch"]
    for backend, pred in predictions.items():
        for head in ("digit", "speaker"):
            np.testing.assert_array_equal(pred[head].argmax(-1), ref[head].argmax(-1), err_msg=f"{backend} {head}")
            np.testing.assert_allclose(pred[head], ref[head], rtol=1e-3, atol=1e-3, err_msg=f"{backend} {head}")


def test_runtime_preprocessing_equals_the_export_pipeline(avnet_bundle_dir, eval_arrays):
    """Runtime.preprocess on one raw sample == the batched evaluation pipeline stored in the bundle."""
    parity = np.load(avnet_bundle_dir / "data/parity_samples.npz")
    with edgemm.load(avnet_bundle_dir, backend="onnxruntime") as rt:
        for i in (0, 5):
            feeds = rt.preprocess(image=eval_arrays["image"][i], audio=(eval_arrays["audio"][i], 8000))
            assert feeds["image"].shape == (1, 3, 64, 64) and feeds["audio"].shape == (1, 1, 64, 98)
            np.testing.assert_allclose(feeds["image"], parity["image"][i:i + 1], atol=1e-4)
            np.testing.assert_allclose(feeds["audio"], parity["audio"][i:i + 1], atol=1e-3)


def test_runtime_labels_and_batch(avnet_bundle_dir, eval_arrays):
    with edgemm.load(avnet_bundle_dir, backend="onnxruntime") as rt:
        assert [t.name for t in rt.inputs] == ["image", "audio"]
        assert [t.name for t in rt.outputs] == ["digit", "speaker"]
        parity = dict(np.load(avnet_bundle_dir / "data/parity_samples.npz"))
        out = rt.run({k: v[:5] for k, v in parity.items()})
        assert list(out) == ["digit", "speaker"]
        assert out["digit"].shape == (5, 10) and out["speaker"].shape == (5, 6)
        labels = rt.labels(out)
        assert [lab for lab, _ in labels["digit"]] == [str(d) for d in out["digit"].argmax(-1)]
        assert all(0.0 < score <= 1.0 for _, score in labels["speaker"])


def test_load_picks_an_available_artifact(avnet_bundle_dir):
    with edgemm.load(avnet_bundle_dir) as rt:
        assert rt.backend in ("onnxruntime", "openvino", "torch")
        assert rt.run(rt.spec.example_feeds(batch=2))["digit"].shape == (2, 10)


def test_load_orders_by_the_ranking_not_by_the_table(avnet_bundle_copy):
    """The latency table may hold rows timed apart (an int8 artifact and its fp32 sibling show the paired rounds
    of the speed verdict); edgemm.load orders by the report's ranking, where every artifact was timed the same
    way in one benchmark."""
    path = avnet_bundle_copy / "reports/latency.json"
    lat = json.loads(path.read_text())
    m = json.loads((avnet_bundle_copy / "manifest.json").read_text())
    ranked = lat["ranking"]["p50_ms"]
    assert set(ranked) == {a["path"] for a in m["artifacts"] if a["backend"] != "torch"}
    fp32 = {a["backend"]: a["path"] for a in m["artifacts"] if a["precision"] == "fp32" and a["backend"] != "torch"}
    assert {"onnxruntime", "openvino"} <= set(fp32)
    for table_fast, ranked_fast in (("onnxruntime", "openvino"), ("openvino", "onnxruntime")):
        lat["runs"] = [{**r, "p50_ms": 0.01 if r["artifact"] == fp32[table_fast] else 9.0} for r in lat["runs"]]
        lat["ranking"]["p50_ms"] = {a: 0.01 if a == fp32[ranked_fast] else 9.0 for a in ranked}
        path.write_text(json.dumps(lat))
        with edgemm.load(avnet_bundle_copy) as rt:
            assert (rt.backend, rt.precision) == (ranked_fast, "fp32")
    del lat["ranking"]  # a bundle written before the ranking: the table's rows order it
    path.write_text(json.dumps(lat))
    with edgemm.load(avnet_bundle_copy) as rt:
        assert rt.backend == "openvino"  # the last table above made openvino's row the fast one


def test_runtime_rejects_bad_feeds(avnet_bundle_dir):
    from edgemm.errors import BundleError, SpecError

    with edgemm.load(avnet_bundle_dir, backend="onnxruntime") as rt:
        feeds = rt.spec.example_feeds(batch=1)
        with pytest.raises(SpecError, match="did you mean 'audio'"):
            rt.run({"image": feeds["image"], "audoi": feeds["audio"]})
        with pytest.raises(SpecError, match="float32"):
            rt.run({"image": feeds["image"].astype(np.float16), "audio": feeds["audio"]})
        with pytest.raises(SpecError, match="missing"):
            rt.run({"image": feeds["image"]})
    with pytest.raises(BundleError, match="did you mean 'openvino'"):
        edgemm.load(avnet_bundle_dir, backend="openvnio")
    with pytest.raises(BundleError, match="no tensorrt"):
        edgemm.load(avnet_bundle_dir, backend="tensorrt")
