"""The litert backend: conversion with litert-torch (fp32 and PT2E int8), the LiteRT interpreter under edgemm's
runner contract, and the one-line answers where either library is missing.

Every test builds what it runs (no prebuilt .tflite files). The conversion tests need litert-torch and
ai-edge-litert (``pip install 'edgemm[litert-convert]'``; litert-torch pins typing_extensions < 4.13, so they run in a
virtual environment of their own) and are skipped with that reason elsewhere."""
from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

from edgemm.backends.base import RunnerOptions
from edgemm.backends.registry import get_backend
from edgemm.errors import BackendUnavailable, BundleError, SpecError

from models.tiny import TinyAV, tiny_feeds, tiny_spec, torch_outputs

HAVE_RUNTIME = importlib.util.find_spec("ai_edge_litert") is not None
HAVE_CONVERTER = HAVE_RUNTIME and importlib.util.find_spec("litert_torch") is not None
needs_litert = pytest.mark.skipif(not HAVE_CONVERTER, reason="litert-torch and ai-edge-litert are not installed "
                                  "(pip install 'edgemm[litert-convert]', in a virtual environment of its own)")


def _cosine(a, b) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _args(feeds, spec):
    from edgemm.torchutil import example_args

    return example_args(spec, feeds)


def test_litert_is_a_declared_target_with_its_own_folder():
    from edgemm.backends.registry import target_names

    b = get_backend("litert")
    assert "litert" in target_names() and b.folder == "litert" and b.formats == ("tflite",)
    assert b.precisions == ("fp32", "int8") and b.device == "cpu" and b.options.__edgemm_section__ == "compile.litert"


@pytest.mark.skipif(HAVE_RUNTIME, reason="checks the answer where ai-edge-litert is missing; it is installed here")
def test_missing_interpreter_is_one_line_with_the_install_command(tmp_path):
    b = get_backend("litert")
    av = b.availability()
    assert not av.available and "ai-edge-litert" in av.reason and "edgemm[litert]" in av.install
    with pytest.raises(BackendUnavailable) as exc:
        b.create_runner(tmp_path / "model.fp32.tflite", tiny_spec())
    assert len(str(exc.value).splitlines()) == 1 and "pip install 'edgemm[litert]'" in str(exc.value)


@pytest.mark.skipif(HAVE_CONVERTER or not HAVE_RUNTIME, reason="checks the answer where only the interpreter is installed")
def test_missing_converter_is_one_line_with_the_install_command(tmp_path):
    with pytest.raises(BackendUnavailable) as exc:
        get_backend("litert").compile_module(TinyAV(0), _args(tiny_feeds(2), tiny_spec()), tmp_path, tiny_spec(), "fp32")
    assert len(str(exc.value).splitlines()) == 1 and "edgemm[litert-convert]" in str(exc.value)


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    """TinyAV converted once, fp32 and int8 (calibrated on 64 random samples)."""
    import torch

    spec, model = tiny_spec(), TinyAV(0)
    out = tmp_path_factory.mktemp("litert")
    b = get_backend("litert")
    args = _args(tiny_feeds(2), spec)
    b.compile_module(model, args, out, spec, "fp32")
    calib = [tuple(torch.from_numpy(tiny_feeds(16, seed=s)[n]) for n in spec.input_names) for s in range(4)]
    made = b.compile_module(model, args, out, spec, "int8", calibration=calib)
    return out, made[0]


@needs_litert
def test_fp32_matches_torch_and_stacks_a_batch(tiny_tflite):
    out, _ = tiny_tflite
    spec, model = tiny_spec(), TinyAV(0)
    feeds = tiny_feeds(5, seed=7)
    with get_backend("litert").create_runner(out / "model.fp32.tflite", spec, RunnerOptions(threads=2)) as r:
        got = r.infer(feeds)
        assert list(got) == spec.output_names
        want = torch_outputs(model, feeds)
        for name, ref in zip(spec.output_names, want):
            assert got[name].shape == ref.shape and got[name].dtype == np.float32
            assert _cosine(got[name], ref) >= 0.9999 and np.abs(got[name] - ref).max() < 1e-4
        one = r.infer({k: v[2:3] for k, v in feeds.items()})
        np.testing.assert_array_equal(one[spec.output_names[0]], got[spec.output_names[0]][2:3])


@needs_litert
def test_int8_model_takes_quantized_feeds_and_stays_close(tiny_tflite):
    from ai_edge_litert.interpreter import Interpreter

    out, made = tiny_tflite
    assert made.format == "tflite" and made.extra["calibration_method"] == "minmax"
    path = out / "model.int8.tflite"
    details = Interpreter(model_path=str(path)).get_input_details()
    assert all(np.dtype(d["dtype"]) == np.int8 and d["quantization"][0] > 0 for d in details)  # why the runner quantizes
    spec, feeds = tiny_spec(), tiny_feeds(32, seed=11)
    want = torch_outputs(TinyAV(0), feeds)
    with get_backend("litert").create_runner(path, spec, RunnerOptions(threads=1, precision="int8")) as r:
        got = r.infer(feeds)
    for name, ref in zip(spec.output_names, want):
        assert got[name].dtype == np.float32 and _cosine(got[name], ref) > 0.98


@needs_litert
def test_runner_is_thread_safe(tiny_tflite):
    out, _ = tiny_tflite
    spec = tiny_spec()
    feeds = [tiny_feeds(1, seed=s) for s in range(8)]
    with get_backend("litert").create_runner(out / "model.int8.tflite", spec, RunnerOptions(threads=1)) as r:
        serial = [r.infer(f)[spec.output_names[0]] for f in feeds]
        got: dict[int, list] = {}

        def work(i):
            got[i] = [r.infer(feeds[(i + k) % 8])[spec.output_names[0]] for k in range(40)]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i, outs in got.items():
        for k, o in enumerate(outs):
            np.testing.assert_array_equal(o, serial[(i + k) % 8])


@needs_litert
def test_a_corrupt_file_and_a_closed_runner_are_one_line(tiny_tflite, tmp_path):
    out, _ = tiny_tflite
    bad = tmp_path / "model.fp32.tflite"
    bad.write_bytes((out / "model.fp32.tflite").read_bytes()[:200])
    with pytest.raises(BundleError) as exc:
        get_backend("litert").create_runner(bad, tiny_spec())
    assert len(str(exc.value).splitlines()) == 1 and "re-export" in str(exc.value)
    r = get_backend("litert").create_runner(out / "model.fp32.tflite", tiny_spec())
    r.close()
    with pytest.raises(SpecError, match="closed"):
        r.infer(tiny_feeds(1))


@needs_litert
def test_a_policy_part_that_is_no_submodule_is_refused_before_converting(tmp_path):
    import torch

    from edgemm.errors import EdgemmError

    spec = tiny_spec()
    calib = [tuple(torch.from_numpy(tiny_feeds(4)[n]) for n in spec.input_names)]
    with pytest.raises(EdgemmError) as exc:
        get_backend("litert").compile_module(TinyAV(0), _args(tiny_feeds(2), spec), tmp_path, spec, "int8",
                                             calibration=calib, float_parts=("vision",))
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1 and "'vision'" in msg and "img" in msg and not list(tmp_path.iterdir())


@needs_litert
@pytest.mark.slow
def test_avnet_fp32_parity_and_int8_within_one_point(tmp_path):
    """The reference model: fp32 cosine >= 0.9999 vs torch on the evaluation split, int8 (PT2E static, edgemm's
    calibration split and min/max method) within 1.0 point of torch's top-1."""
    import torch

    from edgemm.data.calibration import calibration_source
    from edgemm.data.datasets import load_samples
    from edgemm.recipe import load_recipe

    from models.paths import CALIB_NPZ, EVAL_NPZ, RECIPE

    recipe = load_recipe(RECIPE)
    model, spec = recipe.build_model().eval(), recipe.spec
    ev = load_samples(EVAL_NPZ, spec)
    cal = calibration_source(str(CALIB_NPZ), spec, limit=256)
    b = get_backend("litert")
    args = _args({k: v[:2] for k, v in ev.feeds.items()}, spec)
    b.compile_module(model, args, tmp_path, spec, "fp32")
    b.compile_module(model, args, tmp_path, spec, "int8",
                     calibration=[tuple(torch.from_numpy(f[n]) for n in spec.input_names) for f in cal.iter_batches(64)])
    with torch.no_grad():
        ref = model(*[torch.from_numpy(ev.feeds[n]) for n in spec.input_names])[0].numpy()
    labels = ev.labels["digit"]
    ref_top1 = float((ref.argmax(1) == labels).mean())
    for precision in ("fp32", "int8"):
        with b.create_runner(tmp_path / f"model.{precision}.tflite", spec, RunnerOptions(threads=2, precision=precision)) as r:
            digit = r.infer(ev.feeds)["digit"]
        top1 = float((digit.argmax(1) == labels).mean())
        if precision == "fp32":
            assert _cosine(digit, ref) >= 0.9999 and top1 == ref_top1
        else:
            assert ref_top1 - top1 <= 0.01, (ref_top1, top1)


@needs_litert
def test_export_lists_verifies_benches_and_loads_the_litert_artifact(tmp_path):
    """``edgemm.export(..., targets=[..., "litert"])``: the fp32 .tflite is converted from the torch model, listed in
    the manifest, verified against the torch reference and timed by ``edgemm bench`` like every artifact."""
    import json

    import edgemm
    from edgemm.bench.run import benchmark

    out = tmp_path / "b"
    edgemm.export(TinyAV(0), example_inputs=tiny_feeds(2), spec=tiny_spec(), output=out, targets=["onnxruntime", "litert"])
    manifest = json.loads((out / "manifest.json").read_text())
    arts = [a for a in manifest["artifacts"] if a["backend"] == "litert"]
    assert [(a["path"], a["format"], a["precision"]) for a in arts] == [("litert/model.fp32.tflite", "tflite", "fp32")]
    assert arts[0]["toolchain"]["litert-torch"] and arts[0]["toolchain"]["ai-edge-litert"]
    parity = json.loads((out / manifest["reports"]["parity"]).read_text())["artifacts"]["litert/model.fp32.tflite"]
    assert parity["backend"] == "litert" and min(o["cosine"] for o in parity["outputs"].values()) >= 0.9999
    rt = edgemm.load(out, backend="litert")
    feeds = tiny_feeds(3, seed=5)
    got, want = rt.run(feeds), torch_outputs(TinyAV(0), feeds)
    assert all(_cosine(got[n], w) >= 0.9999 for n, w in zip(tiny_spec().output_names, want))
    runs = benchmark(out, backends=("litert",), batches=(1,), rounds=1, seconds=0.2, modes=("model",))["runs"]
    assert [(r["backend"], r["precision"], r["batch"]) for r in runs] == [("litert", "fp32", 1)] and runs[0]["p50_ms"] > 0


@needs_litert
@pytest.mark.slow
def test_cli_export_int8_target_litert_writes_verifies_and_times_fp32_and_int8(tmp_path):
    """``edgemm export export/avnet.toml --int8 --target litert``: fp32 and int8 .tflite in the bundle, fp32 at
    cosine >= 0.9999, int8 within 1.0 point of the torch reference on the evaluation split, and the int8 artifact's
    speed measured against its fp32 sibling (the manifest's ``speed``)."""
    import json
    import subprocess
    import sys

    from models.paths import RECIPE

    out = tmp_path / "b"
    p = subprocess.run([sys.executable, "-m", "edgemm", "export", str(RECIPE), "--int8", "--target", "litert", "-o", str(out)],
                       capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    lite = {a["precision"]: a for a in m["artifacts"] if a["backend"] == "litert"}
    assert sorted(lite) == ["fp32", "int8"] and all(a["format"] == "tflite" for a in lite.values())
    speed = lite["int8"]["extra"]["speed"]
    assert speed["int8_ms"] > 0 and speed["fp32_ms"] > 0 and speed["batch"] == 1
    parity = json.loads((out / m["reports"]["parity"]).read_text())["artifacts"]
    assert min(o["cosine"] for o in parity[lite["fp32"]["path"]]["outputs"].values()) >= 0.9999
    acc = json.loads((out / m["reports"]["accuracy"]).read_text())
    int8 = next(a for a in acc["artifacts"].values() if a["backend"] == "litert" and a["precision"] == "int8")
    assert int8["drop"]["digit"] <= 0.01 and int8["drop"]["speaker"] <= 0.01
