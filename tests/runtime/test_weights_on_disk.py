"""A loaded runtime holds its weights in memory: overwriting an artifact's files in place (as ``cp`` over a deployed
bundle does) or truncating them changes nothing in its outputs and cannot kill the process (OpenVINO mapped the
``.bin`` file: new outputs after a write, SIGBUS after a truncation; ONNX Runtime maps external data files). Each case
runs in a subprocess, so a SIGBUS fails its test instead of killing pytest."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from runner_bundles import tiny_int8_bundle

PROBE = textwrap.dedent(r'''
    import json, os, sys
    import numpy as np
    import edgemm
    from edgemm.backends.base import RunnerOptions
    from edgemm.backends.registry import get_backend
    from edgemm.bundle import Bundle
    from edgemm.iospec import IOSpec
    from edgemm.trust import allow_code

    root, path, how = sys.argv[1], sys.argv[2], sys.argv[3]
    bundle = Bundle.open(root)
    if how == "load":  # the public API: edgemm.load picks the artifact of this backend and precision
        art = next(a for a in bundle.artifacts if a.path == path)
        rt = edgemm.load(root, backend=art.backend, precision=art.precision)
        assert rt.artifact.path == path, rt.artifact.path
        run, spec, files = rt.run, rt.spec, list(art.files or {art.path: ""})
    else:  # "runner": this artifact's runner; "file:BACKEND:PRECISION": a model file outside the manifest
        if how == "runner":
            art = next(a for a in bundle.artifacts if a.path == path)
            backend, precision, files = art.backend, art.precision, list(art.files or {art.path: ""})
        else:
            _, backend, precision = how.split(":")
            files = [f for f in os.listdir(os.path.join(root, os.path.dirname(path)))
                     if f.startswith(os.path.basename(path))]
            files = [os.path.join(os.path.dirname(path), f) for f in files]
        with allow_code():  # the torch reference is a pickled program: the test's own bundle
            runner = get_backend(backend).create_runner(bundle.root / path, bundle.spec, RunnerOptions(precision=precision))
        run, spec = runner.infer, bundle.spec
    feeds = {b: spec.example_feeds(batch=b, seed=b) for b in (1, 2, 3)}
    before = {b: run(feeds[b]) for b in (1, 3)}
    before[2] = run(feeds[2])  # openvino: a later shape set is compiled from the model it read at load
    rng = np.random.default_rng(0)
    for f in files:  # other bytes over every file of the artifact, in place (the same inode a running model holds)
        full = os.path.join(root, f)
        size = os.path.getsize(full)
        with open(full, "r+b") as fh:
            fh.write(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    out = {"files": files, "after_write": {}, "after_truncate": {}}
    for b in (1, 3, 2):
        got = run(feeds[b])
        out["after_write"][b] = max(float(np.max(np.abs(got[k] - before[b][k]))) for k in got)
    for f in files:
        os.truncate(os.path.join(root, f), 0)
    for b in (1, 3, 2):
        got = run(feeds[b])
        out["after_truncate"][b] = max(float(np.max(np.abs(got[k] - before[b][k]))) for k in got)
    print(json.dumps(out))
''')

AVNET = ["onnx/model.fp32.onnx", "openvino/model.fp32.xml", "openvino/model.fp16.xml", "reference/model.pt2"]
INT8 = ["onnx/model.int8.onnx", "openvino/model.int8.onnx", "openvino/model.int8.xml"]


def _marks(path):
    return [pytest.mark.openvino] if path.startswith("openvino/") else []


@pytest.fixture(scope="session")
def int8_bundle(tmp_path_factory):
    return tiny_int8_bundle(tmp_path_factory)


def _probe(bundle_dir, path: str, how: str = "runner") -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, str(bundle_dir), path, how], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (f"{path}: exit {r.returncode} (-7 is SIGBUS: the runtime read weights from a file that "
                               f"changed under it)\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _assert_unchanged(out: dict, path: str) -> None:
    assert out["files"], path
    for when in ("after_write", "after_truncate"):
        for batch, diff in out[when].items():
            assert diff == 0.0, f"{path}: outputs at batch {batch} changed {when.replace('_', ' ')} of {out['files']} (max diff {diff})"


@pytest.mark.parametrize("path", [pytest.param(p, marks=_marks(p)) for p in AVNET])
def test_avnet_runner_keeps_its_weights_when_the_files_change(avnet_bundle_copy, path):
    _assert_unchanged(_probe(avnet_bundle_copy, path), path)


@pytest.mark.parametrize("path", [pytest.param(p, marks=_marks(p)) for p in INT8])
def test_int8_runner_keeps_its_weights_when_the_files_change(int8_bundle, tmp_path, path):
    copy = tmp_path / "bundle"
    shutil.copytree(int8_bundle, copy)
    _assert_unchanged(_probe(copy, path), path)


@pytest.mark.openvino
def test_edgemm_load_keeps_its_weights_when_the_bundle_is_copied_over(avnet_bundle_copy):
    """The issue's case: ``edgemm.load`` on OpenVINO, then the deployed .xml/.bin overwritten and truncated."""
    out = _probe(avnet_bundle_copy, "openvino/model.fp32.xml", how="load")
    assert sorted(out["files"]) == ["openvino/model.fp32.bin", "openvino/model.fp32.xml"]
    _assert_unchanged(out, "openvino/model.fp32.xml")


@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.openvino)])
def test_onnx_with_external_data_is_read_into_memory(avnet_bundle_copy, backend):
    """An ONNX model whose weights sit in an external data file (both libraries map that file by default)."""
    import onnx

    src = avnet_bundle_copy / "onnx" / "model.fp32.onnx"
    ext = avnet_bundle_copy / "onnx" / "external.onnx"
    onnx.save(onnx.load(str(src)), str(ext), save_as_external_data=True, all_tensors_to_one_file=True,
              location="external.onnx.data", size_threshold=1024)
    assert (avnet_bundle_copy / "onnx" / "external.onnx.data").stat().st_size > 0.9 * src.stat().st_size
    out = _probe(avnet_bundle_copy, "onnx/external.onnx", how=f"file:{backend}:fp32")
    assert sorted(out["files"]) == ["onnx/external.onnx", "onnx/external.onnx.data"]
    _assert_unchanged(out, f"onnx/external.onnx in {backend}")
