"""No feed crashes a runtime in native code: every odd array layout the IOSpec accepts (non-contiguous, Fortran
order, read-only, misaligned, broadcast, reversed, a new-axis view, the largest batch) gives the outputs of the same
values in a plain C-contiguous array, and an empty batch is one SpecError line, also when the IOSpec check is
skipped (``infer(check=False)``: OpenVINO aborted the process with heap corruption on it). Each artifact runs in a
subprocess, so a native crash fails its test instead of killing pytest."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from runner_bundles import tiny_int8_bundle

PROBE = textwrap.dedent(r'''
    import json, sys
    import numpy as np
    from edgemm.backends.base import RunnerOptions
    from edgemm.backends.registry import get_backend
    from edgemm.bundle import Bundle
    from edgemm.errors import EdgemmError
    from edgemm.trust import allow_code

    root, path, big = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bundle = Bundle.open(root)
    art = next(a for a in bundle.artifacts if a.path == path)
    with allow_code():  # the torch reference is a pickled program: the test's own bundle
        runner = get_backend(art.backend).create_runner(bundle.root / art.path, bundle.spec, RunnerOptions(precision=art.precision))

    def misaligned(a):
        m = np.frombuffer(bytearray(a.nbytes + 1), dtype=a.dtype, offset=1, count=a.size).reshape(a.shape)
        m[...] = a
        return m

    def readonly(a):
        a = a.copy()
        a.flags.writeable = False
        return a

    base = bundle.spec.example_feeds(batch=6, seed=1)
    layouts = {
        "strided": lambda a: a[::2],
        "fortran": lambda a: np.asfortranarray(a[:3]),
        "readonly": lambda a: readonly(a[:3]),
        "misaligned": lambda a: misaligned(a[:3]),
        "broadcast": lambda a: np.broadcast_to(a[:1], (3, *a.shape[1:])),
        "reversed": lambda a: a[::-1],
        "new_axis": lambda a: a[2][None],
        "last_axes_swapped": lambda a: np.ascontiguousarray(np.swapaxes(a[:3], -1, -2)).swapaxes(-1, -2),
        "largest_batch": lambda a: np.repeat(a[:1], big, axis=0),
    }
    out = {}
    # First, on a fresh runner: openvino compiles the first shape sets it sees for their static shapes, and the empty
    # batch's static model is the one that corrupted the heap.
    for check in (True, False):
        try:
            res = runner.infer({k: v[:0] for k, v in base.items()}, check=check)
            out[f"empty check={check}"] = {"shapes": [list(v.shape) for v in res.values()]}
        except EdgemmError as exc:
            out[f"empty check={check}"] = {"error": type(exc).__name__, "message": str(exc)}
    for name, make in layouts.items():
        for rep in range(3):  # again and again: a run that read freed memory shows up as a difference
            feeds = {k: make(v) for k, v in base.items()}
            plain = {k: np.array(v, order="C", copy=True) for k, v in feeds.items()}
            got = runner.infer(feeds)
            want = runner.infer(plain)
            diff = max(float(np.max(np.abs(got[k] - want[k]))) if got[k].shape == want[k].shape else float("inf") for k in want)
            out[name] = max(out.get(name, 0.0), diff)
    for bad in ("float64", ">f4", "int32"):
        try:
            runner.infer({k: v.astype(bad) for k, v in base.items()})
            out[f"dtype {bad}"] = "ran"
        except EdgemmError as exc:
            out[f"dtype {bad}"] = {"error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(out))
''')

AVNET = ["onnx/model.fp32.onnx", "openvino/model.fp32.xml", "openvino/model.fp16.xml", "reference/model.pt2"]
INT8 = ["onnx/model.int8.onnx", "openvino/model.int8.onnx", "openvino/model.int8.xml"]


def _marks(path):
    return [pytest.mark.openvino] if path.startswith("openvino/") else []


@pytest.fixture(scope="session")
def int8_bundle(tmp_path_factory):
    return tiny_int8_bundle(tmp_path_factory)


def _probe(bundle_dir, path: str, big: int) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, str(bundle_dir), path, str(big)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"{path}: exit {r.returncode} (a negative code is the signal that killed it)\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def _check(out: dict, path: str) -> None:
    for layout in ("strided", "fortran", "readonly", "misaligned", "broadcast", "reversed", "new_axis",
                   "last_axes_swapped", "largest_batch"):
        assert out[layout] <= 1e-6, f"{path}: a {layout} feed gives other outputs than the same values C-contiguous ({out[layout]})"
    checked = out["empty check=True"]
    assert checked.get("error") == "SpecError" and "\n" not in checked["message"], (path, checked)
    assert "at least one sample" in checked["message"], checked
    unchecked = out["empty check=False"]
    if "error" in unchecked:  # refused by the runner itself (openvino): one line that says what to do
        assert unchecked["error"] == "SpecError" and "\n" not in unchecked["message"], (path, unchecked)
        assert ">= 1" in unchecked["message"] and "at least one sample" in unchecked["message"], unchecked
    else:  # the library runs an empty batch: empty outputs
        assert all(s[0] == 0 for s in unchecked["shapes"]), (path, unchecked)
    for bad in ("float64", ">f4", "int32"):
        got = out[f"dtype {bad}"]
        assert got != "ran" and got["error"] == "SpecError" and "\n" not in got["message"] and "astype" in got["message"], (bad, got)


@pytest.mark.parametrize("path", [pytest.param(p, marks=_marks(p)) for p in AVNET])
def test_avnet_runner_takes_every_layout_and_refuses_an_empty_batch(avnet_bundle_dir, path):
    _check(_probe(avnet_bundle_dir, path, big=256), path)


@pytest.mark.parametrize("path", [pytest.param(p, marks=_marks(p)) for p in INT8])
def test_int8_runner_takes_every_layout_and_refuses_an_empty_batch(int8_bundle, path):
    from edgemm.bundle import Bundle

    big = Bundle.open(int8_bundle).spec.axis_range("batch").max  # the largest batch the IOSpec accepts
    _check(_probe(int8_bundle, path, big=big), path)
