"""Runtimes are thread-safe by contract: one runner (or one ``edgemm.load`` Runtime) called from 8 threads at once
gives exactly the outputs of serial calls, on every backend and precision here (onnxruntime fp32 + int8, openvino
fp32 + fp16 + int8 as Q/DQ ONNX and as IR, the torch reference)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import edgemm
from edgemm.backends.base import RunnerOptions
from edgemm.backends.registry import get_backend
from edgemm.bundle import Bundle
from edgemm.trust import allow_code

from runner_bundles import tiny_int8_bundle

THREADS = 8
CALLS = 60  # per thread
BATCHES = (1, 2, 3, 4, 5, 6)  # openvino: 1-4 run on models compiled for their shapes, 5 and 6 on the dynamic one


@pytest.fixture(scope="session")
def int8_bundle(tmp_path_factory):
    return tiny_int8_bundle(tmp_path_factory)


def _runner(bundle_dir, path: str):
    bundle = Bundle.open(bundle_dir)
    art = next(a for a in bundle.artifacts if a.path == path)
    with allow_code():  # the torch reference is a pickled program: the test's own bundle
        return get_backend(art.backend).create_runner(bundle.root / art.path, bundle.spec, RunnerOptions(precision=art.precision))


def _feeds(spec, n: int = 24) -> list[dict[str, np.ndarray]]:
    return [spec.example_feeds(batch=BATCHES[i % len(BATCHES)], seed=i) for i in range(n)]


def _hammer(run, feeds: list, want: list, threads: int = THREADS, calls: int = CALLS) -> list[str]:
    """``threads`` threads start together and each makes ``calls`` calls on a different walk through ``feeds``;
    returns every mismatch with ``want`` (the serial outputs) and every exception raised."""
    barrier = threading.Barrier(threads)
    problems: list[str] = []

    def work(k: int) -> None:
        try:
            barrier.wait()
            for i in range(calls):
                j = (k * 5 + i * (k + 1)) % len(feeds)
                got = run(feeds[j])
                for name, w in want[j].items():
                    if got[name].shape != w.shape or not np.array_equal(got[name], w):
                        problems.append(f"thread {k} call {i} feed {j} output {name}: "
                                        + (f"max diff {np.max(np.abs(got[name] - w))}" if got[name].shape == w.shape
                                           else f"shape {got[name].shape}, serial {w.shape}"))
        except Exception as exc:  # a runner that raises under concurrency fails the test with its message
            problems.append(f"thread {k}: {type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in pool), "a runner call hung under concurrency"
    return problems


FLOAT_ARTIFACTS = ["onnx/model.fp32.onnx", "openvino/model.fp32.xml", "openvino/model.fp16.xml", "reference/model.pt2"]
INT8_ARTIFACTS = ["onnx/model.int8.onnx", "openvino/model.int8.onnx", "openvino/model.int8.xml"]


def _marks(path):
    return [pytest.mark.openvino] if path.startswith("openvino/") else []


@pytest.mark.parametrize("path", [pytest.param(p, marks=_marks(p)) for p in FLOAT_ARTIFACTS])
def test_avnet_runner_from_8_threads_matches_serial(avnet_bundle_dir, path):
    runner = _runner(avnet_bundle_dir, path)
    try:
        feeds = _feeds(runner.spec)
        want = [runner.infer(f) for f in feeds]
        problems = _hammer(runner.infer, feeds, want)
        assert problems == [], f"{len(problems)} wrong of {THREADS * CALLS}: {problems[:5]}"
    finally:
        runner.close()


@pytest.mark.parametrize("path", [pytest.param(p, marks=_marks(p)) for p in INT8_ARTIFACTS])
def test_int8_runner_from_8_threads_matches_serial(int8_bundle, path):
    runner = _runner(int8_bundle, path)
    try:
        feeds = _feeds(runner.spec)
        want = [runner.infer(f) for f in feeds]
        problems = _hammer(runner.infer, feeds, want)
        assert problems == [], f"{len(problems)} wrong of {THREADS * CALLS}: {problems[:5]}"
    finally:
        runner.close()


@pytest.mark.openvino
def test_openvino_fresh_runner_compiles_each_shape_once_under_concurrency(avnet_bundle_dir):
    """Threads bring new shape sets at the same time: each is compiled once, none past STATIC_SHAPES, and the
    outputs equal those of a runner that saw the same shapes one at a time."""
    serial = _runner(avnet_bundle_dir, "openvino/model.fp32.xml")
    fresh = _runner(avnet_bundle_dir, "openvino/model.fp32.xml")
    try:
        feeds = [serial.spec.example_feeds(batch=1 + i % 4, seed=i) for i in range(16)]  # 4 shape sets: all static
        want = [serial.infer(f) for f in feeds]
        problems = _hammer(fresh.infer, feeds, want, calls=20)
        assert problems == [], problems[:5]
        assert sorted(k[0][0] for k in fresh._requests) == [1, 2, 3, 4]
    finally:
        serial.close()
        fresh.close()


@pytest.mark.parametrize("backend", [pytest.param("openvino", marks=pytest.mark.openvino), "onnxruntime"])
def test_edgemm_load_run_from_8_threads_matches_serial(avnet_bundle_dir, backend):
    """The public API: one Runtime shared by threads."""
    rt = edgemm.load(avnet_bundle_dir, backend=backend, precision="fp32")
    try:
        feeds = _feeds(rt.spec)
        want = [rt.run(f) for f in feeds]
        problems = _hammer(rt.run, feeds, want)
        assert problems == [], f"{len(problems)} wrong of {THREADS * CALLS}: {problems[:5]}"
    finally:
        rt.close()
