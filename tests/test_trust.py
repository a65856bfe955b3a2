"""Trust and safety: a bundle is data, nothing a user owns is lost, every failure is one line.

Everything here is real: real bundles tampered with on disk, a real malicious pickle inside a real
``.pt2`` archive, real ``python -m edgemm`` processes (their stderr must be exactly one line), a real
SIGINT to a real export's process group.
"""
from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import edgemm
from edgemm.bundle import MANIFEST, STAGING_MARKER, Bundle, BundleWriter, sha256_file
from edgemm.errors import BundleError, EdgemmError, UntrustedCode, one_line
from edgemm import trust
from edgemm.compare import nonfinite_breach

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def _cli(*args, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    """``python -m edgemm ARGS`` as a user runs it (this checkout first on the path)."""
    e = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "edgemm", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout, env=e)


def _one_error_line(res: subprocess.CompletedProcess, code: int = 2, prefix: str = "edgemm: error: ") -> str:
    """The process failed with ``code`` and its stderr is exactly one line (no traceback, no library log)."""
    lines = res.stderr.splitlines()
    assert res.returncode == code, (res.returncode, res.stderr[-3000:])
    assert len(lines) == 1, f"stderr is {len(lines)} lines, not one:\n{res.stderr[-3000:]}"
    assert lines[0].startswith(prefix), lines[0]
    return lines[0]


def _manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def _write_manifest(root: Path, m: dict) -> None:
    (root / MANIFEST).write_text(json.dumps(m))


def _set_artifact_file(root: Path, m: dict, old_rel: str, new_rel: str, sha: str) -> None:
    for a in m["artifacts"]:
        if old_rel in a["files"]:
            a["files"] = {(new_rel if k == old_rel else k): (sha if k == old_rel else v) for k, v in a["files"].items()}
            if a["path"] == old_rel:
                a["path"], a["sha256"] = new_rel, sha


def _malicious_pt2(src: Path, dst: Path, side_effect: Path) -> None:
    """A copy of a real torch.export archive whose first weight is a pickle that writes ``side_effect`` when loaded.

    ``torch.export.load`` reads pickled weights with ``weights_only=False``: this is the attack, for real.
    """
    import torch

    class _Evil:
        def __reduce__(self):
            return (exec, (f"open({str(side_effect)!r}, 'w').write('pwned')",))

    buf = io.BytesIO()
    torch.save(_Evil(), buf)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("model_weights_config.json"):
                cfg = json.loads(data)
                first = next(iter(cfg["config"].values()))
                first["use_pickle"] = True
                evil_name = first["path_name"]
                data = json.dumps(cfg).encode()
            zout.writestr(item, data)
    with zipfile.ZipFile(dst) as z:  # swap the weight's bytes for the pickle
        items = [(i, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(dst, "w") as zout:
        for item, data in items:
            zout.writestr(item, buf.getvalue() if item.filename.endswith(f"weights/{evil_name}") else data)


@pytest.fixture
def evil_bundle(tiny_bundle_copy, tmp_path) -> tuple[Path, Path]:
    """The tiny bundle with a malicious reference/model.pt2 (its sha256 updated, as an attacker would)."""
    side = tmp_path / "PWNED"
    pt2 = tiny_bundle_copy / "reference" / "model.pt2"
    evil = tmp_path / "evil.pt2"
    _malicious_pt2(pt2, evil, side)
    shutil.copyfile(evil, pt2)
    m = _manifest(tiny_bundle_copy)
    _set_artifact_file(tiny_bundle_copy, m, "reference/model.pt2", "reference/model.pt2", sha256_file(pt2))
    _write_manifest(tiny_bundle_copy, m)
    return tiny_bundle_copy, side


# --------------------------------------------------------------------------- code named by a bundle


def test_malicious_pt2_is_real(evil_bundle, tmp_path):
    """The attack works when opted in (so the refusals below are not vacuous)."""
    root, side = evil_bundle
    with trust.allow_code():
        try:
            edgemm.load(root, backend="torch")
        except Exception:  # the evil weight is not a tensor; the damage is done while unpickling
            pass
    assert side.read_text() == "pwned"


def test_pt2_not_unpickled_without_opt_in(evil_bundle):
    root, side = evil_bundle
    with pytest.raises(UntrustedCode) as exc:
        edgemm.load(root, backend="torch")
    assert "--trust-code" in str(exc.value) and "unpickle" in str(exc.value)
    res = _cli("-q", "run", root, "--backend", "torch", "--video", "synthetic:video?fps=30", "--max-frames", "2")
    line = _one_error_line(res)
    assert "--trust-code" in line
    assert not side.exists()


def test_verify_does_not_unpickle_the_reference(evil_bundle):
    """`edgemm verify` on a foreign bundle never unpickles reference/model.pt2: it compares against the reference
    outputs stored at export, and passes."""
    root, side = evil_bundle
    res = _cli("-q", "verify", root)
    assert not side.exists()
    assert res.returncode == 0, res.stderr[-2000:]
    assert "stored at export" in json.loads((Path(root) / "reports/parity.json").read_text())["reference"]


@pytest.fixture
def factory_bundle(tiny_bundle_copy, tmp_path) -> tuple[Path, Path, Path]:
    """A bundle naming ``evilfactory:build``, and a working directory that holds ``evilfactory.py``."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    side = tmp_path / "IMPORTED"
    (cwd / "evilfactory.py").write_text(f"open({str(side)!r}, 'w').write('imported')\n"
                                        "from models.tiny import TinyAV\n\ndef build(**kw):\n    return TinyAV(0)\n")
    m = _manifest(tiny_bundle_copy)
    m["model"]["factory"] = "evilfactory:build"
    _write_manifest(tiny_bundle_copy, m)
    return tiny_bundle_copy, cwd, side


def test_bench_does_not_import_a_factory_from_the_cwd(factory_bundle):
    root, cwd, side = factory_bundle
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    res = _cli("-q", "bench", root, "--backends", "torch", "--modes", "model", "--batch", "1", "--seconds", "0.05",
               "--rounds", "1", cwd=cwd, env=env)
    line = _one_error_line(res)
    assert "no torch baseline" in line and "--trust-code" in line and "evilfactory" in line
    assert not side.exists()
    # opted in, the same command does import it: the check above can fail
    res = _cli("bench", root, "--backends", "torch", "--modes", "model", "--batch", "1", "--seconds", "0.05",
               "--rounds", "1", "--trust-code", cwd=cwd, env=env)
    assert side.exists(), res.stderr[-2000:]


def test_zoo_factories_are_located_without_import(tmp_path, monkeypatch):
    """Trusted means: inside the installed edgemm zoo, found by find_spec; a same-named module elsewhere is not."""
    (tmp_path / "avnet.py").write_text(f"open({str(tmp_path / 'X')!r}, 'w')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert trust.is_trusted_factory("edgemm.zoo.avnet:build")
    zoo = Path(edgemm.__file__).resolve().parent / "zoo"
    assert zoo in trust.zoo_module_file("edgemm.zoo.avnet").parents
    for ref in ("avnet:build", "edgemm.zoo.nothere:build", "edgemm.zoo.avnet:_private", "os:system", "edgemm.bundle:Bundle",
                "edgemm.zoo.avnet", "edgemm..zoo:x", 42):
        assert not trust.is_trusted_factory(ref), ref
    with pytest.raises(UntrustedCode) as exc:
        trust.resolve_factory("avnet:build")
    assert "--trust-code" in str(exc.value)
    assert not (tmp_path / "X").exists()


def test_malicious_checkpoint_is_one_line(tmp_path):
    """A zoo factory with a checkpoint whose pickle runs code: refused by the weights-only loader, one line, exit 2."""
    import torch

    side = tmp_path / "CKPT_PWNED"

    class _Evil:
        def __reduce__(self):
            return (exec, (f"open({str(side)!r}, 'w').write('pwned')",))

    torch.save({"model": _Evil()}, tmp_path / "evil.pt")
    recipe = (REPO / "export" / "avnet.toml").read_text()
    lines = [ln for ln in recipe.splitlines() if not ln.strip().startswith("checkpoint")]
    i = next(k for k, ln in enumerate(lines) if ln.strip() == "[model]")
    lines.insert(i + 1, f'checkpoint = "{tmp_path / "evil.pt"}"')
    text = "\n".join(lines).replace('"../', f'"{REPO}/')
    (tmp_path / "r.toml").write_text(text)
    res = _cli("export", tmp_path / "r.toml", "-o", tmp_path / "out", "--no-verify")
    line = _one_error_line(res)
    assert "--trust-code" in line and "evil.pt" in line
    assert not side.exists() and not (tmp_path / "out").exists()


def test_corrupt_pt2_is_one_line(tiny_bundle_copy):
    """torch logs its own traceback for a bad archive; edgemm's line is the only thing on stderr."""
    pt2 = tiny_bundle_copy / "reference" / "model.pt2"
    data = bytearray(pt2.read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = b"\0" * 64
    pt2.write_bytes(bytes(data))
    m = _manifest(tiny_bundle_copy)
    _set_artifact_file(tiny_bundle_copy, m, "reference/model.pt2", "reference/model.pt2", sha256_file(pt2))
    _write_manifest(tiny_bundle_copy, m)
    res = _cli("-q", "run", tiny_bundle_copy, "--backend", "torch", "--trust-code", "--video", "synthetic:video?fps=30",
               "--max-frames", "2")
    assert "model.pt2" in _one_error_line(res)


# --------------------------------------------------------------------------- paths stay inside the bundle


def _escape_artifact(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    shutil.copyfile(root / "onnx" / "model.fp32.onnx", outside)
    m = _manifest(root)
    _set_artifact_file(root, m, "onnx/model.fp32.onnx", "../outside.onnx", sha256_file(outside))
    _write_manifest(root, m)
    assert root.parent == tmp_path  # '../outside.onnx' names that very file, hash matching


def _symlink_artifact(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(root / "onnx" / "model.fp32.onnx", outside)
    (root / "onnx" / "model.fp32.onnx").symlink_to(outside)  # same bytes, same sha256, but not in the bundle


def _symlink_folder(root: Path, tmp_path: Path) -> None:
    shutil.move(root / "onnx", tmp_path / "onnx_elsewhere")
    (root / "onnx").symlink_to(tmp_path / "onnx_elsewhere")


def _report_outside(root: Path, tmp_path: Path) -> None:
    m = _manifest(root)
    m["reports"]["parity"] = "../../secret.json"
    _write_manifest(root, m)


def _parity_absolute(root: Path, tmp_path: Path) -> None:
    m = _manifest(root)
    m["parity_samples"]["path"] = str(tmp_path / "samples.npz")
    _write_manifest(root, m)


def _tokenizer_outside(root: Path, tmp_path: Path) -> None:
    m = _manifest(root)
    m["inputs"][0]["modality"] = "text"
    m["inputs"][0]["preprocessing"] = {"tokenizer": "../vocab.txt"}
    _write_manifest(root, m)


def _evaluation_relative_outside(root: Path, tmp_path: Path) -> None:
    m = _manifest(root)
    m.setdefault("evaluation", {})["source"] = "../eval.npz"
    _write_manifest(root, m)


ESCAPES = {"artifact ../outside.onnx": _escape_artifact, "artifact symlink": _symlink_artifact,
           "folder symlink": _symlink_folder, "report ../..": _report_outside, "parity samples absolute": _parity_absolute,
           "tokenizer ../": _tokenizer_outside, "evaluation ../": _evaluation_relative_outside}


@pytest.mark.parametrize("escape", list(ESCAPES))
def test_paths_outside_the_bundle_are_refused(tiny_bundle_copy, tmp_path, escape):
    ESCAPES[escape](tiny_bundle_copy, tmp_path)
    with pytest.raises(BundleError):
        Bundle.open(tiny_bundle_copy)
    with pytest.raises(BundleError):
        Bundle.open(tiny_bundle_copy, verify_hashes=False)
    with pytest.raises(BundleError):
        edgemm.load(tiny_bundle_copy, backend="onnxruntime")
    line = _one_error_line(_cli("info", tiny_bundle_copy))
    assert "bundle" in line
    line = _one_error_line(_cli("info", tiny_bundle_copy, "--no-hash-check"))
    line = _one_error_line(_cli("-q", "verify", tiny_bundle_copy, "--trust-code"))
    assert "outside" in line or "not a path relative" in line


def test_symlink_inside_the_bundle_is_fine(tiny_bundle_copy):
    """A link that stays inside the bundle is not an escape (the check is not 'no symlinks at all')."""
    real = tiny_bundle_copy / "onnx" / "real.onnx"
    shutil.move(tiny_bundle_copy / "onnx" / "model.fp32.onnx", real)
    (tiny_bundle_copy / "onnx" / "model.fp32.onnx").symlink_to("real.onnx")
    Bundle.open(tiny_bundle_copy)


# --------------------------------------------------------------------------- malformed manifests


MALFORMED = {
    "model is a string": lambda m: m.update(model="tinyav"),
    "reports is a list": lambda m: m.update(reports=["reports/parity.json"]),
    "artifacts is an object": lambda m: m.update(artifacts={"path": "x"}),
    "artifact is a number": lambda m: m.update(artifacts=[1]),
    "artifact path is a number": lambda m: m["artifacts"][0].update(path=3),
    "artifact files is a list": lambda m: m["artifacts"][0].update(files=["onnx/model.fp32.onnx"]),
    "inputs is an object": lambda m: m.update(inputs={"name": "image"}),
    "shape is a string": lambda m: m["inputs"][0].update(shape="1x3x8x8"),
    "format_version is a string": lambda m: m.update(format_version="1"),
    "calibration is null": lambda m: m.update(calibration=None),
    "parity_samples is a list": lambda m: m.update(parity_samples=[]),
    "no artifacts key": lambda m: m.pop("artifacts"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest_is_one_line(tiny_bundle_copy, case):
    m = _manifest(tiny_bundle_copy)
    MALFORMED[case](m)
    _write_manifest(tiny_bundle_copy, m)
    b = tiny_bundle_copy
    for args in (["info", b], ["-q", "verify", b, "--trust-code"], ["run", b, "--video", "synthetic:video", "--max-frames", "1"]):
        line = _one_error_line(_cli(*args))
        assert "manifest" in line, line


def test_manifest_not_json_object(tiny_bundle_copy):
    (tiny_bundle_copy / MANIFEST).write_text("[1, 2]")
    assert "not a JSON object" in _one_error_line(_cli("info", tiny_bundle_copy))


# --------------------------------------------------------------------------- nothing a user owns is lost


def _export_pt2_cli(pt2: Path, out: Path) -> subprocess.CompletedProcess:
    return _cli("-q", "export", pt2, "-o", out, "--no-verify", "--target", "onnxruntime")


def test_web_app_folder_survives_export(tiny_bundle_dir, tmp_path):
    """A folder with its own manifest.json (a web app's) is not a bundle: export refuses, every file stays."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "manifest.json").write_text(json.dumps({"name": "My App", "icons": []}))
    (site / "index.html").write_text("<html>mine</html>")
    res = _export_pt2_cli(tiny_bundle_dir / "reference" / "model.pt2", site)
    line = _one_error_line(res)
    assert "not an edgemm bundle" in line
    assert (site / "index.html").read_text() == "<html>mine</html>"
    assert json.loads((site / "manifest.json").read_text())["name"] == "My App"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # nothing left beside it


def test_bundle_with_a_user_file_is_not_replaced(tiny_bundle_copy, tiny_bundle_dir):
    (tiny_bundle_copy / "notes.txt").write_text("my notes")
    (tiny_bundle_copy / "onnx" / "tuned.onnx").write_text("my own model")
    with pytest.raises(BundleError) as exc:
        BundleWriter(tiny_bundle_copy)
    assert "notes.txt" in str(exc.value) and "onnx/tuned.onnx" in str(exc.value)
    res = _export_pt2_cli(tiny_bundle_dir / "reference" / "model.pt2", tiny_bundle_copy)
    assert "does not list" in _one_error_line(res)
    assert (tiny_bundle_copy / "notes.txt").read_text() == "my notes"
    assert [p.name for p in tiny_bundle_copy.parent.iterdir() if p.name.startswith(".")] == []


def test_a_real_bundle_is_replaced_and_nothing_is_left(tiny_bundle_copy, tiny_bundle_dir):
    before = _manifest(tiny_bundle_copy)
    res = _export_pt2_cli(tiny_bundle_dir / "reference" / "model.pt2", tiny_bundle_copy)
    assert res.returncode == 0, res.stderr[-2000:]
    after = Bundle.open(tiny_bundle_copy)
    assert {a.backend for a in after.artifacts} != {a["backend"] for a in before["artifacts"]} or after.manifest != before
    assert [p.name for p in tiny_bundle_copy.parent.iterdir() if p.name.startswith(".")] == []


def test_file_and_symlink_outputs_are_refused(tmp_path, tiny_bundle_dir):
    f = tmp_path / "out"
    f.write_text("data")
    with pytest.raises(BundleError):
        BundleWriter(f)
    link = tmp_path / "link"
    link.symlink_to(tiny_bundle_dir)
    with pytest.raises(BundleError) as exc:
        BundleWriter(link)
    assert "symlink" in str(exc.value)
    assert f.read_text() == "data" and (tiny_bundle_dir / MANIFEST).is_file()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _minimal_bundle(w: BundleWriter, note: str = "x") -> Bundle:
    from models.tiny import tiny_spec

    (w.path("data/parity_samples.npz")).write_bytes(b"npz")
    return w.commit({"model": {"name": note, "source": "test", "sha256": ""},
                     "graphs": {"main": {**tiny_spec().to_manifest(), "parity": {"path": "data/parity_samples.npz"}}},
                     "calibration": {"source": None, "sha256": None, "samples": 0, "method": None}, "reports": {}})


def test_stale_leftovers_of_a_dead_export_are_cleaned_only_if_ours(tmp_path):
    out = tmp_path / "b"
    dead = _dead_pid()
    ours = tmp_path / f".b.tmp-{dead}-abc123"
    ours.mkdir()
    (ours / STAGING_MARKER).write_text("{}")
    (ours / "onnx").mkdir()
    (ours / "onnx" / "half.onnx").write_bytes(b"half-written")
    strangers = tmp_path / f".b.tmp-{dead}-zzz999"  # same name pattern, but not edgemm's: no marker, not a bundle
    strangers.mkdir()
    (strangers / "thesis.tex").write_text("mine")
    alive = tmp_path / f".b.tmp-{os.getppid()}-live01"  # a live process's staging folder
    alive.mkdir()
    (alive / STAGING_MARKER).write_text("{}")
    with BundleWriter(out) as w:
        assert not ours.exists()
        assert (strangers / "thesis.tex").read_text() == "mine" and alive.exists()
        _minimal_bundle(w)
    assert Bundle.open(out, verify_hashes=False).name == "x"


def test_interrupted_commit_is_recovered(tmp_path):
    """Killed between hiding the old bundle and moving the new one in: the next export puts the old one back first."""
    out = tmp_path / "b"
    with BundleWriter(out) as w:
        _minimal_bundle(w, "old")
    hidden = tmp_path / f".b.old-{_dead_pid()}-k1"
    os.rename(out, hidden)
    w = BundleWriter(out)
    try:
        assert Bundle.open(out, verify_hashes=False).name == "old" and not hidden.exists()
    finally:
        w.__exit__(None, None, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_failed_swap_keeps_the_old_bundle(tmp_path, monkeypatch):
    """Where the atomic exchange is unavailable and the second rename fails, the old bundle is put back."""
    import edgemm.bundle as bmod

    out = tmp_path / "b"
    with BundleWriter(out) as w:
        _minimal_bundle(w, "old")
    monkeypatch.setattr(bmod, "_exchange", lambda a, b: False)
    real_rename = os.rename

    def failing(src, dst):
        if Path(src).name.startswith(".b.tmp-") and Path(dst) == out:
            raise OSError(28, "No space left on device", str(src))
        return real_rename(src, dst)

    monkeypatch.setattr(bmod.os, "rename", failing)
    with pytest.raises(OSError):
        with BundleWriter(out) as w:
            _minimal_bundle(w, "new")
    assert Bundle.open(out, verify_hashes=False).name == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_atomic_exchange_replaces(tmp_path):
    out = tmp_path / "b"
    for name in ("one", "two"):
        with BundleWriter(out) as w:
            _minimal_bundle(w, name)
    assert Bundle.open(out, verify_hashes=False).name == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_two_exports_to_one_output_cannot_interleave(tmp_path):
    out = tmp_path / "b"
    holder = subprocess.Popen([sys.executable, "-c", f"import sys, time; sys.path[:0] = [{str(REPO)!r}]\n"
                               f"from edgemm.bundle import BundleWriter\nw = BundleWriter({str(out)!r})\n"
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BundleError) as exc:
            BundleWriter(out)
        assert "another edgemm export" in str(exc.value)
    finally:
        holder.kill()
        holder.wait()
    with BundleWriter(out) as w:  # the lock died with its process; its staging folder is cleaned
        _minimal_bundle(w)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# --------------------------------------------------------------------------- Ctrl-C


def _sigint_export(args: list, trigger: str, out: Path, delay: float = 0.5, timeout: float = 900):
    """Start a real export in its own process group, SIGINT the group (as a terminal's Ctrl-C does) once
    ``trigger`` appears on stderr, and return (returncode, seconds from SIGINT to exit, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.Popen([sys.executable, "-m", "edgemm", "export", *map(str, args), "-o", str(out)], cwd=REPO, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a terminal's default
    import threading

    chunks: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            chunks.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t_end = time.monotonic() + timeout
    sent = None
    try:
        while proc.poll() is None and time.monotonic() < t_end:
            if sent is None and trigger in "".join(chunks):
                time.sleep(delay)
                os.killpg(proc.pid, signal.SIGINT)
                sent = time.monotonic()
            if sent is not None and time.monotonic() - sent > 30:
                break
            time.sleep(0.05)
        stopped = proc.poll() is not None
        exit_s = time.monotonic() - sent if sent is not None else None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    reader.join(5)
    buf = "".join(chunks)
    assert sent is not None, f"never saw {trigger!r}:\n{buf[-3000:]}"
    assert stopped, f"still running 30 s after SIGINT:\n{buf[-3000:]}"
    return proc.returncode, exit_s, buf


@pytest.mark.parametrize("trigger", ["exporting ONNX", "INT8 for onnxruntime"])
def test_ctrl_c_stops_a_tiny_export(tiny_bundle_dir, tmp_path, trigger):
    out = tmp_path / "b"
    rc, secs, err = _sigint_export([tiny_bundle_dir / "reference" / "model.pt2", "--int8", "--calib", "synthetic",
                                    "--target", "onnxruntime", "--no-verify"], trigger, out, delay=0.2)
    assert rc == 130, err[-3000:]
    assert err.rstrip().splitlines()[-1] == "edgemm: interrupted"
    assert secs < 10, secs
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.openvino
def test_ctrl_c_while_quantizing_for_openvino(tmp_path):
    """The issue's case: avnet --int8 for OpenVINO, Ctrl-C while quantizing: exit 130 within seconds, nothing left."""
    out = tmp_path / "avnet"
    rc, secs, err = _sigint_export([REPO / "export" / "avnet.toml", "--int8", "--target", "openvino"],
                                   "openvino: quantizing", out, delay=1.0)  # quantizing lasts ~3 s now: 2.0 could land after it
    assert rc == 130, err[-3000:]
    assert err.rstrip().splitlines()[-1] == "edgemm: interrupted"
    assert secs < 10, secs
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.openvino
def test_ctrl_c_while_evaluating_the_reference_after_openvino(tmp_path):
    """Ctrl-C after the OpenVINO INT8 step (here: running the torch reference) died with SIGSEGV in 0.1 s: the
    OpenVINO runners timed side by side had left the main thread on an unmapped alternate signal stack
    (see edgemm.backends.openvino.backend.shared_core). Exit 130 within seconds, nothing left."""
    out = tmp_path / "avnet"
    rc, secs, err = _sigint_export([REPO / "export" / "avnet.toml", "--int8", "--target", "openvino"],
                                   "evaluating the reference", out, delay=1.0)  # the phase lasts ~5 s
    assert rc == 130, (rc, err[-3000:])
    assert err.rstrip().splitlines()[-1] == "edgemm: interrupted"
    assert secs < 10, secs
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.openvino
def test_sigint_after_openvino_runners_freed_out_of_order(tiny_bundle_dir):
    """The cause of the SIGSEGV above, in seconds: two OpenVINO runners freed oldest first, then a SIGINT must still
    be a KeyboardInterrupt (it was a SIGSEGV: each runner's own Core left a stale sigaltstack behind)."""
    script = f"""
import gc, os, signal, sys
sys.path[:0] = [{str(REPO)!r}]
from edgemm.backends.base import RunnerOptions
from edgemm.backends.registry import get_backend
from edgemm.bundle import Bundle
b = Bundle.open({str(tiny_bundle_dir)!r})
art = next(a for a in b.artifacts if a.backend == "openvino" and a.precision == "fp32")
be = get_backend("openvino")
first = be.create_runner(b.root / art.path, b.spec, RunnerOptions(threads=1, precision="fp32"))
second = be.create_runner(b.root / art.path, b.spec, RunnerOptions(threads=1, precision="fp32"))
first.close(); second.close()
del first; gc.collect()
del second; gc.collect()
try:
    signal.raise_signal(signal.SIGINT)  # to this (the main) thread: os.kill may land on a runtime's worker thread
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0 and res.stdout.strip() == "interrupted", (res.returncode, res.stderr[-3000:])


# --------------------------------------------------------------------------- one line everywhere


def test_bad_bench_flags_are_one_line(tiny_bundle_dir, tmp_path):
    for flags in (["--rounds", "0"], ["--seconds", "0"], ["--threads", "0"]):
        assert flags[0] in _one_error_line(_cli("bench", tiny_bundle_dir, *flags))
    line = _one_error_line(_cli("bench", tiny_bundle_dir, "--json", tmp_path / "no" / "such" / "dir.json"))
    assert "does not exist" in line


def test_unwritable_json_lines_is_one_line(tiny_bundle_dir, tmp_path):
    for target, words in ((tmp_path / "missing" / "r.jsonl", "does not exist"), (tmp_path, "folder")):
        line = _one_error_line(_cli("run", tiny_bundle_dir, "--video", "synthetic:video", "--max-frames", "1",
                                    "--json-lines", target))
        assert words in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_disk_full_is_one_line(tiny_bundle_dir):
    """/dev/full answers every write with ENOSPC: a real disk-full error, after a real measurement."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full (Linux)")
    res = _cli("-q", "bench", tiny_bundle_dir, "--backends", "onnxruntime", "--precisions", "fp32", "--modes", "model",
               "--batch", "1", "--seconds", "0.05", "--rounds", "1", "--json", "/dev/full")
    line = _one_error_line(res)
    assert "No space left on device" in line and "free some disk space" in line


def test_usage_errors_are_one_line(tiny_bundle_dir):
    line = _one_error_line(_cli("run", tiny_bundle_dir, "--video", "synthetic:video", "--bogus"))
    assert "--bogus" in line and "--help" in line
    assert "--threads" in _one_error_line(_cli("bench", tiny_bundle_dir, "--threads", "many"))


def test_internal_error_is_one_line_and_exit_1(monkeypatch, capsys, tiny_bundle_dir):
    from edgemm.cli import main
    from edgemm.cli.commands import info

    def boom(args):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(info, "cmd_info", boom)
    assert main(["info", str(tiny_bundle_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("edgemm: internal error: ZeroDivisionError: division by zero second line")
    assert "-v" in err
    assert main(["-v", "info", str(tiny_bundle_dir)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("edgemm: internal error:")


def test_error_keeps_its_cause_for_verbose(tiny_bundle_copy, capsys):
    """`edgemm -v` prints the library's traceback behind a user error (the cause is kept, not `from None`)."""
    from edgemm.cli import main

    (tiny_bundle_copy / MANIFEST).write_text("{not json")
    assert main(["info", str(tiny_bundle_copy)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["-v", "info", str(tiny_bundle_copy)]) == 2
    err = capsys.readouterr().err
    assert "JSONDecodeError" in err and "Traceback" in err


def test_one_line_keeps_spacing_and_removes_breaks():
    assert one_line("a  b\n  c\r\nd\u2028e") == "a  b c d e"
    assert str(EdgemmError("table:\n  x   1\n  y   2")) == "table: x   1 y   2"


# --------------------------------------------------------------------------- numbers that are valid


def test_json_lines_nan_score_is_null():
    from edgemm.cli.commands.run import json_line
    from edgemm.runtime.stream import Result

    r = Result(index=0, t_capture=0.5, outputs={"digit": ("3", float("nan")), "speaker": ("jackson", 0.9)}, raw={},
               latency_ms={"capture_to_result": 1.0, "infer": 0.5}, dropped_frames=0)
    line = json_line(r.to_json())

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    obj = json.loads(line, parse_constant=no_constants)
    assert obj["outputs"]["digit"] == {"label": "3", "score": None, "nonfinite_score": True}
    assert obj["outputs"]["speaker"]["score"] == 0.9
    assert json.loads(json_line({"x": [float("inf"), -float("inf"), 1.0]}), parse_constant=no_constants) == {"x": [None, None, 1.0]}


def test_nonfinite_outputs_are_a_breach():
    ref = np.ones((2, 3), np.float32)
    assert nonfinite_breach(ref, np.full((2, 3), np.inf, np.float32)) == "6 of 6 values are inf/NaN where the reference is finite"
    assert "1 of 6" in nonfinite_breach(ref, np.where(np.eye(2, 3) * np.arange(6).reshape(2, 3) > 3, np.nan, 1.0))
    assert nonfinite_breach(ref, ref.copy()) is None
    assert nonfinite_breach(np.array([np.inf]), np.array([np.inf])) is None  # the reference has it too
    a = ref.astype(np.float64).ravel()
    b = np.full(6, np.inf)
    with np.errstate(invalid="ignore"):
        cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert math.isnan(cos) and not (cos < 0.99)  # why a threshold alone passes an all-inf artifact


def test_reports_are_valid_json(tmp_path):
    from edgemm.bundle import _atomic_write_json

    _atomic_write_json(tmp_path / "r.json", {"cosine": float("nan"), "max_abs": float("inf")})
    assert json.loads((tmp_path / "r.json").read_text()) == {"cosine": None, "max_abs": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
