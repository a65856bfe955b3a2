"""Start-up: a Ctrl-C in the first seconds of a command (while Python imports edgemm, torch and the command's
modules, before any work) is ``edgemm: interrupted`` with exit 130, never a KeyboardInterrupt traceback; a
corrupt ``.pt2`` is edgemm's one line, torch's own logged traceback kept for ``-v``.

Real processes: the installed ``edgemm`` console script (``python -m edgemm`` where it is missing), SIGINT sent
to its process group as a terminal's Ctrl-C does, a real corrupt archive."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.paths import ROOT

SCRIPT = Path(sys.executable).with_name("edgemm")


def command(*args) -> list[str]:
    head = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "edgemm"]
    return [*head, *map(str, args)]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def tiny_pt2(tmp_path_factory) -> Path:
    import torch

    from models.tiny import TinyAV, tiny_feeds

    feeds = tiny_feeds(2)
    batch = torch.export.Dim("batch")
    ep = torch.export.export(TinyAV(0), (torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["audio"])),
                             dynamic_shapes=({0: batch}, {0: batch}))
    path = tmp_path_factory.mktemp("startup") / "tiny.pt2"
    torch.export.save(ep, path)
    return path


@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0, 1.5])
def test_ctrl_c_in_the_first_seconds_is_one_line_and_exit_130(tiny_pt2, tmp_path, delay):
    out = tmp_path / "B"
    proc = subprocess.Popen(command("-q", "export", tiny_pt2, "--target", "onnxruntime", "-o", out), cwd=tmp_path,
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a terminal's default
    try:
        time.sleep(delay)
        assert proc.poll() is None, "the export ended before the interrupt; the test needs a longer command"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, err[-3000:])
    assert err.splitlines() == ["edgemm: interrupted"], err[-3000:]
    assert list(tmp_path.iterdir()) == []  # no bundle, no staging folder left behind


def test_ctrl_c_while_python_m_edgemm_starts(tmp_path):
    """``python -m edgemm`` covers the import of the CLI too; a help run is interrupted while it builds the parser."""
    proc = subprocess.Popen([sys.executable, "-m", "edgemm", "-q", "backends"], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(0.3)
        if proc.poll() is not None:
            pytest.skip("`edgemm backends` finished within 0.3 s on this machine")
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and err.splitlines() == ["edgemm: interrupted"], (proc.returncode, err[-3000:])


def corrupt_pt2(tiny_pt2: Path, folder: Path, how: str) -> Path:
    data = bytearray(tiny_pt2.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "zeroed":
        data[len(data) // 3: len(data) // 3 + 256] = b"\0" * 256
    else:  # not an archive at all
        data = bytearray(os.urandom(4096))
    path = folder / f"{how}.pt2"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how", ["truncated", "zeroed", "random"])
def test_a_corrupt_pt2_is_one_line_and_torchs_log_only_under_v(tiny_pt2, tmp_path, how):
    bad = corrupt_pt2(tiny_pt2, tmp_path, how)
    r = subprocess.run(command("export", bad, "-o", tmp_path / "B"), cwd=tmp_path, env=env(), capture_output=True,
                       text=True, timeout=300)
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith(f"edgemm: error: cannot load torch.export program {bad} (") and \
        lines[0].endswith("it is corrupt or from another torch version: re-export it"), lines[0]
    assert not (tmp_path / "B").exists()
    r = subprocess.run(command("-v", "export", bad, "-o", tmp_path / "B"), cwd=tmp_path, env=env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.splitlines()[-1] == lines[0], r.stderr[-3000:]
    if how != "zeroed":  # a zeroed stretch may leave the zip directory readable: torch then raises without logging
        assert "torch.export: Ran into the following error when deserializing" in r.stderr, r.stderr[-3000:]
