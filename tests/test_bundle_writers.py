"""One bundle writer: compile, verify and export take the bundle's lock, re-read the manifest under it and commit
files + manifest as one; concurrent writers are serialised and never lose an artifact; a failed, interrupted or
terminated update leaves the bundle as it was, with no unlisted file and no work folder behind."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgemm.bundle import Bundle, replace_refusal

FORMAT1 = Path(__file__).parent / "data" / "format1_tiny"


@pytest.fixture
def bundle(tmp_path):
    dest = tmp_path / "b"
    shutil.copytree(FORMAT1, dest)
    return dest


def _edgemm(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgemm", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _listed_and_clean(root: Path) -> Bundle:
    b = Bundle.open(root)  # every listed file is there with its hash
    assert replace_refusal(root) is None  # ... and nothing is there that the manifest does not list
    assert [p.name for p in root.parent.iterdir() if p.name.startswith(".")] == []  # no work folder left beside it
    return b


def test_two_compiles_and_a_verify_started_together_lose_nothing(bundle):
    procs = [_edgemm("compile", str(bundle), "--target", "openvino", "--no-verify"),
             _edgemm("compile", str(bundle), "--target", "onnxruntime", "--no-verify"),
             _edgemm("verify", str(bundle))]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    b = _listed_and_clean(bundle)
    compiled = {(a.backend, a.extra.get("source")) for a in b.artifacts if "edgemm-compile" in a.toolchain}
    assert compiled == {("openvino", "onnx/model.fp32.onnx"), ("onnxruntime", "onnx/model.fp32.onnx")}
    assert {"parity", "latency"} <= set(b.manifest["reports"])
    r = subprocess.run([sys.executable, "-m", "edgemm", "verify", str(bundle)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr


def test_a_failed_update_puts_everything_back(bundle, tmp_path):
    before = (bundle / "manifest.json").read_bytes()
    old_report = (bundle / "reports/parity.json").read_bytes()
    b = Bundle.open(bundle)
    with pytest.raises(RuntimeError, match="half way"):
        with b.update() as u:
            new = u.work / "new.onnx"
            new.write_bytes(b"x")
            u.install(new, "onnx/extra.onnx")
            u.write_report("parity", {"replaced": True})
            raise RuntimeError("half way")
    assert (bundle / "manifest.json").read_bytes() == before
    assert (bundle / "reports/parity.json").read_bytes() == old_report  # the report it replaced is back
    assert not (bundle / "onnx/extra.onnx").exists()
    _listed_and_clean(bundle)


def test_sigterm_during_an_update_leaves_the_bundle_as_it_was(bundle):
    before = (bundle / "manifest.json").read_bytes()
    code = f"""
import os, signal, time
from edgemm.bundle import Bundle
b = Bundle.open({str(bundle)!r})
with b.update() as u:
    f = u.work / "x.onnx"
    f.write_bytes(b"x" * 10)
    u.install(f, "onnx/x.onnx")
    print("installed", flush=True)
    time.sleep(60)
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "installed"
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    assert p.returncode != 0
    assert (bundle / "manifest.json").read_bytes() == before
    assert not (bundle / "onnx/x.onnx").exists()
    _listed_and_clean(bundle)


def test_a_killed_writer_leaves_a_work_folder_the_next_writer_removes(bundle):
    code = f"""
import os
from edgemm.bundle import Bundle
with Bundle.open({str(bundle)!r}).update() as u:
    os.kill(os.getpid(), 9)
"""
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert [p for p in bundle.parent.iterdir() if p.name.startswith(".")]  # SIGKILL: nothing could clean up
    Bundle.open(bundle).write_report("note", {"ok": True})  # the next writer recovers first
    b = _listed_and_clean(bundle)
    assert json.loads((bundle / b.manifest["reports"]["note"]).read_text()) == {"ok": True}


def test_a_writer_waits_for_the_lock_then_refuses_in_one_line(bundle):
    from edgemm.errors import BundleError

    code = f"""
import time
from edgemm.bundle import Bundle
with Bundle.open({str(bundle)!r}).update():
    print("locked", flush=True)
    time.sleep(30)
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(BundleError, match="another edgemm process is writing bundle") as exc:
            Bundle.open(bundle).update(wait_s=0.5).__enter__()
        assert time.monotonic() - t0 >= 0.5 and "\n" not in str(exc.value)
    finally:
        p.kill()
        p.wait()
