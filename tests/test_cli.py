"""The `edgemm` command line: verbs, help, and one-line errors with exit code 2.

`compile` is asserted on for what it verifies (only what it added); `run` and `bench` messages are in
test_error_messages.py.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from edgemm.cli import main

from models.paths import RECIPE, ROOT


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("edgemm: error: "), err
    return lines[0]


def _recipe_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = RECIPE.read_text()
    assert old in text
    p = tmp_path / "recipe.toml"
    p.write_text(text.replace(old, new).replace('"../', f'"{ROOT}/'))
    return p


@pytest.mark.parametrize("verb", ["export", "verify", "info", "backends"])
def test_help(verb, capsys):
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    assert verb in capsys.readouterr().out


def test_export_help_names_the_contract_flags(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    for flag in ("--int8", "--qat", "--prune", "--calib", "--target", "--max-drop", "-o"):
        assert flag in out, flag


def test_version(capsys):
    import edgemm

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and edgemm.__version__ in capsys.readouterr().out


def test_backends(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert list(rows)[:4] == ["torch", "onnxruntime", "openvino", "tensorrt"]
    assert " available " in rows["torch"] and " available " in rows["onnxruntime"]
    from edgemm.backends.registry import get_backend

    if not get_backend("tensorrt").availability().available:
        assert "unavailable" in rows["tensorrt"] and "install:" in rows["tensorrt"] and "pip install" in rows["tensorrt"]


def test_backends_json(capsys):
    assert main(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {r["name"]: r for r in rows}
    assert {"torch", "onnxruntime", "openvino", "tensorrt"} <= set(by)
    for r in rows:
        assert {"available", "version", "reason", "install", "devices"} <= set(r)
        if not r["available"]:
            assert r["reason"] and r["install"]


def test_console_entry_point():
    """`python -m edgemm` runs the same main() and returns its exit code."""
    res = subprocess.run([sys.executable, "-m", "edgemm", "info", "/nonexistent/bundle"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("edgemm: error: ") and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr


def test_info(avnet_bundle_dir, capsys):
    assert main(["info", str(avnet_bundle_dir)]) == 0
    out = capsys.readouterr().out
    assert "avnet" in out
    for text in ("image", "audio", "digit", "speaker", "onnx/model.fp32.onnx", "reference/model.pt2", "accuracy"):
        assert text in out, text


def test_info_json_is_the_manifest(avnet_bundle_dir, capsys):
    assert main(["info", "--json", str(avnet_bundle_dir)]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((avnet_bundle_dir / "manifest.json").read_text())


def test_verify(avnet_bundle_copy, tmp_path, capsys):
    import numpy as np

    from models.paths import EVAL_NPZ

    small = tmp_path / "eval48.npz"  # --eval with a 48-sample slice keeps this test fast
    with np.load(EVAL_NPZ) as z:
        np.savez(small, **{k: (z[k][:48] if z[k].ndim else z[k]) for k in ("image", "audio", "audio.sample_rate", "digit", "speaker")})
    (avnet_bundle_copy / "reports" / "parity.json").unlink()
    assert main(["-q", "verify", str(avnet_bundle_copy), "--eval", str(small), "--trust-code"]) == 0
    out = capsys.readouterr().out
    assert "onnx/model.fp32.onnx" in out and "min cosine" in out and "accuracy on 48 held-out samples" in out
    parity = json.loads((avnet_bundle_copy / "reports" / "parity.json").read_text())
    assert "onnx/model.fp32.onnx" in parity["artifacts"]
    accuracy = json.loads((avnet_bundle_copy / "reports" / "accuracy.json").read_text())
    assert accuracy["samples"] == 48
    assert accuracy["reference"]["metrics"]["digit"] >= 0.85


def test_missing_recipe(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.toml"), "-o", str(tmp_path / "b")]) == 2
    assert "nope.toml" in _error_line(capsys)
    assert not (tmp_path / "b").exists()


def test_recipe_typo(tmp_path, capsys):
    p = _recipe_copy(tmp_path, "opset = 18", "opsett = 18")
    assert main(["export", str(p), "-o", str(tmp_path / "b")]) == 2
    line = _error_line(capsys)
    assert "'opsett'" in line and "did you mean 'opset'" in line
    assert sorted(x.name for x in tmp_path.iterdir()) == ["recipe.toml"]


def test_missing_checkpoint(tmp_path, capsys):
    p = _recipe_copy(tmp_path, "checkpoints/avnet.pt", "checkpoints/missing.pt")
    assert main(["export", str(p), "-o", str(tmp_path / "b")]) == 2
    line = _error_line(capsys)
    assert "missing.pt" in line and "not found" in line
    assert sorted(x.name for x in tmp_path.iterdir()) == ["recipe.toml"]


def test_bad_target_flag(tmp_path, capsys):
    assert main(["export", str(RECIPE), "--target", "onnxruntime,openvnio", "-o", str(tmp_path / "b")]) == 2
    assert "did you mean 'openvino'" in _error_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags, says", [(["--prune", "1.5"], "outside (0, 1)"),
                                         (["--prune", "imgae=0.5"], "did you mean 'image'"),
                                         (["--prune", "0.5", "--finetune-epochs", "-1"], "epochs")])
def test_bad_prune_flags_are_one_line_before_any_work(tmp_path, capsys, flags, says):
    assert main(["export", str(RECIPE), *flags, "-o", str(tmp_path / "b")]) == 2
    assert says in _error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_not_a_model_file(tmp_path, capsys):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"x")
    assert main(["export", str(f), "-o", str(tmp_path / "b")]) == 2
    assert "is not a readable ONNX model" in _error_line(capsys)
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    assert main(["export", str(f), "-o", str(tmp_path / "b")]) == 2
    line = _error_line(capsys)
    assert "cannot export" in line and "an ONNX model (.onnx)" in line
    assert not (tmp_path / "b").exists()


class _Lines(logging.Handler):
    """The edgemm logger's lines (its own stderr handler is bound to whichever stderr the first command had)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_compile_verifies_and_times_only_what_it_added(avnet_bundle_copy, capsys):
    before = {k: json.loads((avnet_bundle_copy / "reports" / f"{k}.json").read_text()) for k in ("parity", "latency")}
    log = _Lines()
    logging.getLogger("edgemm").addHandler(log)
    try:
        assert main(["compile", str(avnet_bundle_copy), "--target", "onnxruntime"]) == 0
    finally:
        logging.getLogger("edgemm").removeHandler(log)
    verified = [m for m in log.lines if m.startswith("verifying ")]
    assert len(verified) == 1 and "ort-extended" in verified[0], log.lines  # not the other artifacts again
    assert "added onnx/model.fp32.ort-extended.onnx" in capsys.readouterr().out
    parity = json.loads((avnet_bundle_copy / "reports" / "parity.json").read_text())
    latency = json.loads((avnet_bundle_copy / "reports" / "latency.json").read_text())
    new = "onnx/model.fp32.ort-extended.onnx"
    assert set(parity["artifacts"]) == set(before["parity"]["artifacts"]) | {new}
    old_rows = {r["artifact"]: r for r in before["latency"]["runs"]}
    rows = {r["artifact"]: r for r in latency["runs"]}
    assert set(rows) == set(old_rows) | {new}
    assert all(rows[a] == r for a, r in old_rows.items())  # the others' rows kept as their last verification wrote them
    # edgemm.load's ranking gains the new artifact and keeps the others' medians
    assert latency["ranking"]["p50_ms"] == {**before["latency"]["ranking"]["p50_ms"], new: latency["ranking"]["p50_ms"][new]}


@pytest.mark.parametrize("verb", ["info", "verify"])
def test_tampered_bundle(avnet_bundle_copy, capsys, verb):
    p = avnet_bundle_copy / "onnx" / "model.fp32.onnx"
    data = bytearray(p.read_bytes())
    data[-100] ^= 0x01
    p.write_bytes(bytes(data))
    assert main([verb, str(avnet_bundle_copy)]) == 2
    line = _error_line(capsys)
    assert "onnx/model.fp32.onnx" in line and "sha256" in line


@pytest.mark.parametrize("verb", ["info", "verify"])
def test_corrupt_manifest(avnet_bundle_copy, capsys, verb):
    (avnet_bundle_copy / "manifest.json").write_text('{"format_version": 1,')
    assert main([verb, str(avnet_bundle_copy)]) == 2
    assert "corrupt" in _error_line(capsys)


@pytest.mark.parametrize("verb", ["info", "verify"])
def test_missing_bundle(tmp_path, capsys, verb):
    assert main([verb, str(tmp_path / "nothing")]) == 2
    assert "does not exist" in _error_line(capsys)


def test_unknown_verb(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["exprot"])
    assert exc.value.code == 2


def test_info_can_skip_the_hash_check(avnet_bundle_copy, capsys):
    p = avnet_bundle_copy / "onnx" / "model.fp32.onnx"
    data = bytearray(p.read_bytes())
    data[-100] ^= 0x01
    p.write_bytes(bytes(data))
    assert main(["info", "--no-hash-check", str(avnet_bundle_copy)]) == 0
    assert "avnet" in capsys.readouterr().out


@pytest.mark.slow
def test_export_verb_end_to_end(tmp_path):
    """The real console command on the shipped recipe (a second full export: slow)."""
    out = tmp_path / "avnet"
    res = subprocess.run([sys.executable, "-m", "edgemm", "-q", "export", str(RECIPE), "-o", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "bundle:" in res.stdout and "parity vs the fp32 reference" in res.stdout
    m = json.loads((out / "manifest.json").read_text())
    assert {"parity", "accuracy", "latency"} <= set(m["reports"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avnet"]
    res = subprocess.run([sys.executable, "-m", "edgemm", "-q", "verify", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
