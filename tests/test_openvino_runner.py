"""The OpenVINO runner: a dynamic-batch IR runs on models compiled for the shapes it is fed (a few shape sets),
then on the dynamic model; every path gives the torch model's numbers, and a run never sees the previous run's data."""
from __future__ import annotations

import numpy as np
import pytest

from edgemm.backends.base import RunnerOptions
from edgemm.backends.registry import get_backend
from edgemm.bundle import Bundle

from models.tiny import TinyAV, tiny_feeds, torch_outputs

pytestmark = pytest.mark.openvino


def _runner(bundle_dir):
    bundle = Bundle.open(bundle_dir)
    art = next(a for a in bundle.artifacts if a.backend == "openvino" and a.precision == "fp32")
    return get_backend("openvino").create_runner(bundle.root / art.path, bundle.spec, RunnerOptions(threads=2, precision="fp32"))


def test_batches_run_on_static_models_then_the_dynamic_one(tiny_bundle_dir):
    model = TinyAV(0)
    runner = _runner(tiny_bundle_dir)
    try:
        batches = [1, 3, 1, 2, 5, 7, 9, 1, 7]
        for i, b in enumerate(batches):
            feeds = tiny_feeds(b, seed=i)
            got = runner.infer(feeds)
            for name, want in zip(("cls", "spk"), torch_outputs(model, feeds)):
                np.testing.assert_allclose(got[name], want, atol=1e-5, rtol=1e-4, err_msg=f"batch {b}, run {i}")
        # batches 1, 3, 2, 5 got models of their own; 7 and 9 ran on the dynamic model
        assert sorted(k[0][0] for k in runner._requests) == [1, 2, 3, 5] and runner.STATIC_SHAPES == 4
        assert runner._request_for(tiny_feeds(7)) is runner._dynamic
    finally:
        runner.close()


def test_outputs_are_copies_and_inputs_are_not_kept(tiny_bundle_dir):
    runner = _runner(tiny_bundle_dir)
    try:
        a, b = tiny_feeds(1, seed=1), tiny_feeds(1, seed=2)
        first = runner.infer(a)
        kept = {k: v.copy() for k, v in first.items()}
        runner.infer(b)  # the same request and output tensors again
        for k in first:
            np.testing.assert_array_equal(first[k], kept[k])
        a["image"][:] = 0  # the caller reuses its buffer: the next run reads the new values
        again = runner.infer(a)
        want = torch_outputs(TinyAV(0), a)
        np.testing.assert_allclose(again["cls"], want[0], atol=1e-5, rtol=1e-4)
    finally:
        runner.close()


def test_int8_artifacts_are_static_only_where_the_export_probed_them(tiny_bundle_dir):
    """OpenVINO's low-precision passes have crashed the process compiling int8 graphs at static shapes: an int8
    runner compiles static only with the export's probe recorded for this very OpenVINO version."""
    from edgemm.backends.openvino.backend import OpenVinoBackend

    bundle = Bundle.open(tiny_bundle_dir)
    art = next(a for a in bundle.artifacts if a.backend == "openvino" and a.precision == "fp32")
    here = OpenVinoBackend._version()
    for probe, static in ((None, False), ("2020.1.0-other-build", False), (here, True)):
        runner = get_backend("openvino").create_runner(bundle.root / art.path, bundle.spec,
                                                       RunnerOptions(threads=2, precision="int8", static_probe=probe))
        try:
            for b in (1, 2):
                feeds = tiny_feeds(b)
                np.testing.assert_allclose(runner.infer(feeds)["cls"], torch_outputs(TinyAV(0), feeds)[0], atol=1e-5, rtol=1e-4)
            assert (sorted(k[0][0] for k in runner._requests) == [1]) == static, probe  # batch 1: the probed shapes
            assert (runner._requests == {}) == (not static), probe
        finally:
            runner.close()


def test_static_probe_compiles_in_a_child_and_reports_its_death(tiny_bundle_dir, tmp_path, monkeypatch):
    """The probe answers None for a model that compiles, and one line naming the signal when the child dies (a
    child killed by SIGFPE, as OpenVINO's passes did) or the compiler's last error line."""
    from edgemm.backends.openvino import probe

    bundle = Bundle.open(tiny_bundle_dir)
    art = next(a for a in bundle.artifacts if a.backend == "openvino" and a.precision == "fp32")
    shapes = probe.static_shapes(bundle.spec)
    assert shapes == {t.name: [1, *t.shape[1:]] for t in bundle.spec.inputs}
    assert probe.static_compile_failure(bundle.root / art.path, shapes) is None
    bad = tmp_path / "bad.xml"
    bad.write_text("<net>not a model</net>")
    assert probe.static_compile_failure(bad, shapes).startswith("OpenVINO cannot compile it for static shapes (")
    monkeypatch.setattr(probe, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGFPE)")
    assert probe.static_compile_failure(bundle.root / art.path, shapes) == \
        "OpenVINO's compiler died with SIGFPE compiling it for static shapes"


def test_the_recorded_deployment_batch_is_compiled_at_load(tiny_bundle_dir, tmp_path):
    """[compile.openvino] static_batch (default 1) is stored in the IR; the runner compiles that batch's fixed-shape
    model when it loads, and static_batch = none leaves fixed shapes to the first call of each."""
    from edgemm.backends.openvino.options import OpenVinoOptions

    bundle = Bundle.open(tiny_bundle_dir)
    onnx = bundle.root / next(a for a in bundle.artifacts if a.backend == "onnxruntime" and a.precision == "fp32").path
    backend = get_backend("openvino")
    for batch, folder in ((2, "b2"), (None, "none")):
        out = tmp_path / folder
        out.mkdir()
        (compiled,) = backend.compile(onnx, out, bundle.spec, "fp32", options=OpenVinoOptions(static_batch=batch))
        runner = backend.create_runner(out / compiled.main, bundle.spec, RunnerOptions(threads=2, precision="fp32"))
        try:
            assert [k[0][0] for k in runner._requests] == ([2] if batch else [])
            feeds = tiny_feeds(2, seed=3)
            np.testing.assert_allclose(runner.infer(feeds)["cls"], torch_outputs(TinyAV(0), feeds)[0], atol=1e-5, rtol=1e-4)
        finally:
            runner.close()
    assert OpenVinoOptions().static_batch == 1
