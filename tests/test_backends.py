"""Backend registry and availability reporting."""
from __future__ import annotations

import numpy as np
import pytest

from edgemm.backends.base import Availability, Backend, RunnerOptions
from edgemm.backends.registry import all_backends, get_backend
from edgemm.bundle import Bundle
from edgemm.errors import BackendUnavailable, BundleError, EdgemmError

from models.tiny import TinyAV, tiny_feeds, torch_outputs


def test_all_four_backends_are_listed_in_order():
    names = list(all_backends())
    assert names[:4] == ["torch", "onnxruntime", "openvino", "tensorrt"]
    for name, b in all_backends().items():
        assert isinstance(b, Backend) and b.name == name
        assert b.formats and b.precisions and b.description


def test_get_backend_unknown_with_hint():
    with pytest.raises(EdgemmError) as exc:
        get_backend("openvnio")
    assert "did you mean 'openvino'" in str(exc.value)


@pytest.mark.parametrize("name", ["torch", "onnxruntime"])
def test_core_backends_are_available(name):
    av = get_backend(name).availability()
    assert isinstance(av, Availability)
    assert av.available and av.version and av.reason is None


def test_tensorrt_availability_is_explained():
    av = get_backend("tensorrt").availability()
    from edgemm.backends.tensorrt.build import tensorrt_installed  # a bare tests/tensorrt folder on sys.path is not TensorRT

    if tensorrt_installed() and av.available:
        pytest.skip("TensorRT and a GPU are present on this machine")
    assert not av.available
    assert av.reason and av.install and "pip install" in av.install
    with pytest.raises(BackendUnavailable) as exc:
        get_backend("tensorrt").require()
    assert "tensorrt" in str(exc.value) and "install it with" in str(exc.value)


@pytest.mark.openvino
def test_openvino_is_available():
    av = get_backend("openvino").availability()
    assert av.available and "CPU" in av.devices


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_tensorrt_lists_a_device():
    av = get_backend("tensorrt").availability()
    assert av.available and av.devices


def test_torch_runner_for_a_live_module():
    model = TinyAV(0)
    from models.tiny import tiny_spec

    runner = get_backend("torch").runner_for_module(model, tiny_spec(), RunnerOptions(threads=1))
    feeds = tiny_feeds(3)
    out = runner.infer(feeds)
    assert list(out) == ["cls", "spk"]
    for got, want in zip(out.values(), torch_outputs(model, feeds)):
        np.testing.assert_array_equal(got, want)
    assert runner.last_latency_ms is not None and runner.last_latency_ms >= 0


@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.openvino)])
def test_runner_matches_torch_and_checks_feeds(tiny_bundle_dir, backend):
    from edgemm.errors import SpecError

    b = Bundle.open(tiny_bundle_dir)
    art = b.select(backend=backend, precision="fp32")[0]
    feeds = tiny_feeds(3, seed=7)
    with get_backend(backend).create_runner(tiny_bundle_dir / art.path, b.spec, RunnerOptions(threads=1)) as r:
        out = r.infer(feeds)
        for got, want in zip(out.values(), torch_outputs(TinyAV(0), feeds)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        with pytest.raises(SpecError, match="float32"):
            r.infer({k: v.astype(np.float64) for k, v in feeds.items()})


def test_unloadable_artifact_is_a_bundle_error(tmp_path, tiny_bundle_dir):
    from edgemm.backends.torch.backend import load_program

    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x00not onnx")
    spec = Bundle.open(tiny_bundle_dir).spec
    with pytest.raises(BundleError, match="onnxruntime cannot load"):
        get_backend("onnxruntime").create_runner(junk, spec)
    with pytest.raises(BundleError, match="cannot load torch program"):
        load_program(junk, trust_code=True)
    with pytest.raises(EdgemmError, match="would unpickle it .* --trust-code"):
        load_program(junk)  # a bundle's program is unpickled only with opt-in


def test_torch_runner_restores_the_global_thread_count():
    import torch

    from edgemm.backends import RunnerOptions
    from edgemm.backends.registry import reference_backend
    from models.tiny import TinyAV, tiny_feeds, tiny_spec

    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    with reference_backend().runner_for_module(TinyAV(0), tiny_spec(), RunnerOptions(threads=want)) as r:
        r.infer(tiny_feeds(2))
        assert torch.get_num_threads() == want
    assert torch.get_num_threads() == before


def test_every_backend_declares_a_folder_and_the_registry_knows_one_reference():
    from edgemm.backends.registry import all_backends, reference_backend, target_names

    backends = all_backends()
    assert sum(b.reference for b in backends.values()) == 1 and reference_backend().name not in target_names()
    folders = [b.folder for b in backends.values()]
    assert len(folders) == len(set(folders))
    for b in backends.values():
        assert b.default_quantizer is None or not b.reference
        assert b.checked_by is None or b.checked_by in backends


def test_onnxruntime_spinning_is_the_librarys_default_unless_asked(tiny_bundle_dir):
    """Spinning workers are faster on a quiet machine and slower under load (benchmarks/bench_ort_spinning.py):
    the library's default stays, RunnerOptions.spin=False turns it off, and the session carries the decision."""
    import os

    from edgemm.backends.onnxruntime.backend import allow_spinning

    cores = len(os.sched_getaffinity(0))
    assert allow_spinning(RunnerOptions(threads=cores)) is True
    assert allow_spinning(RunnerOptions(threads=None)) is True
    assert allow_spinning(RunnerOptions(threads=cores, spin=False)) is False
    b = Bundle.open(tiny_bundle_dir)
    art = next(a for a in b.artifacts if a.backend == "onnxruntime" and a.precision == "fp32")
    for spin, entry in ((None, "1"), (False, "0")):
        runner = get_backend("onnxruntime").create_runner(b.root / art.path, b.spec, RunnerOptions(threads=cores, spin=spin))
        assert runner.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == entry
        runner.close()


def test_onnxruntime_static_batch_session_and_the_dynamic_fallback(tiny_bundle_dir):
    """OrtRunner(static_batch=1): the batch axis fixed by a free-dimension override (an unfixed model's other batch
    fails in that session: the override took), and other batches run on a dynamic session made on first need."""
    from edgemm.backends.onnxruntime.backend import OrtRunner

    b = Bundle.open(tiny_bundle_dir)
    art = b.select(backend="onnxruntime", precision="fp32")[0]
    dynamic = OrtRunner(b.root / art.path, b.spec, RunnerOptions(threads=1))
    static = OrtRunner(b.root / art.path, b.spec, RunnerOptions(threads=1), static_batch=1)
    with pytest.raises(Exception):
        static.session.run(b.spec.output_names, tiny_feeds(3, seed=1))
    for n in (1, 3, 1):
        feeds = tiny_feeds(n, seed=n)
        for got, want in zip(static.infer(feeds).values(), dynamic.infer(feeds).values()):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert static._dynamic is not None and static._dynamic is not static.session  # noqa: SLF001 - made for batch 3
    dynamic.close()
    static.close()
