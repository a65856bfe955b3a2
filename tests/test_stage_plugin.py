"""The stage seam, proven with a separate package: examples/stage_plugin registers the stage `ort-format` through the
`edgemm.stages` entry point. pip-installed (into a target folder, so the test environment is not changed),
`edgemm export export/avnet.toml --stage ort-format` writes the ORT-format artifact and `edgemm verify` checks it.
No file under edgemm/ names it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from models.paths import RECIPE, ROOT

PLUGIN = ROOT / "examples" / "stage_plugin"


def test_no_edgemm_file_names_the_stage():
    hits = [str(p) for p in (ROOT / "edgemm").rglob("*.py") if "ort-format" in p.read_text() or "ort_format" in p.read_text()]
    assert hits == []


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    site = tmp_path_factory.mktemp("stage-plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
                    str(PLUGIN)], check=True, capture_output=True, text=True)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))


def _edgemm(env, *args, timeout=1200):
    return subprocess.run([sys.executable, "-m", "edgemm", *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_export_with_the_plugin_stage_then_verify(plugin_env, tmp_path):
    out = tmp_path / "bundle"
    r = _edgemm(plugin_env, "export", str(RECIPE), "--stage", "ort-format", "--option", "stages.ort-format.optimization=basic",
                "--target", "onnxruntime", "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    ort = [a for a in manifest["artifacts"] if a["format"] == "ort"]
    assert [a["path"] for a in ort] == ["ort/model.fp32.ort"] and ort[0]["backend"] == "onnxruntime"
    assert ort[0]["extra"]["optimization"] == "basic"
    assert (out / "ort/model.fp32.ort").read_bytes()[4:8] == b"ORTM"  # the flatbuffer's file identifier, not ONNX protobuf
    r = _edgemm(plugin_env, "verify", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    parity = json.loads((out / "reports/parity.json").read_text())
    entry = parity["artifacts"]["ort/model.fp32.ort"]
    assert min(o["cosine"] for o in entry["outputs"].values()) >= 0.9999


def test_unknown_stage_and_bad_option_are_one_line(plugin_env, tmp_path):
    r = _edgemm(plugin_env, "export", str(RECIPE), "--stage", "ort-fromat", "-o", str(tmp_path / "b"))
    assert r.returncode == 2 and "did you mean 'ort-format'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _edgemm(plugin_env, "export", str(RECIPE), "--stage", "ort-format", "--option", "stages.ort-format.optimization=fast",
                "-o", str(tmp_path / "b"))
    assert r.returncode == 2 and "optimization" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
