"""The backend seam, proven with a separate package: examples/backend_plugin registers `ort-plugin` through the
`edgemm.backends` entry point. pip-installed (into a target folder, so the test environment is not changed), it is
listed, exported for (fp32 + int8 with the scheme it declares), verified, and loaded. No file under edgemm/ names it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.paths import RECIPE, ROOT

PLUGIN = ROOT / "examples" / "backend_plugin"


def test_no_edgemm_file_names_the_plugin():
    hits = [str(p) for p in (ROOT / "edgemm").rglob("*.py") if "ort-plugin" in p.read_text() or "ort_plugin" in p.read_text()]
    assert hits == []


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    site = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
                    str(PLUGIN)], check=True, capture_output=True, text=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return env


def _edgemm(env, *args, timeout=1200):
    return subprocess.run([sys.executable, "-m", "edgemm", *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_the_installed_plugin_is_listed(plugin_env):
    r = _edgemm(plugin_env, "backends", "--json")
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["ort-plugin"]["available"] and rows["ort-plugin"]["declares"]["default_quantizer"] == "ort"


@pytest.mark.slow
def test_export_verify_load_through_the_plugin(plugin_env, tmp_path):
    out = tmp_path / "b"
    r = _edgemm(plugin_env, "export", str(RECIPE), "--int8", "--target", "ort-plugin", "-o", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    mine = {(a["path"], a["precision"]) for a in manifest["artifacts"] if a["backend"] == "ort-plugin"}
    assert mine == {("onnx/model.fp32.onnx", "fp32"), ("ort-plugin/model.int8.onnx", "int8")}
    int8 = next(a for a in manifest["artifacts"] if a["backend"] == "ort-plugin" and a["precision"] == "int8")
    assert int8["extra"]["quantizer"] == "ort" and int8["extra"]["checked_on"] == "ort-plugin"
    r = _edgemm(plugin_env, "verify", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    parity = json.loads((out / "reports/parity.json").read_text())["artifacts"]
    accuracy = json.loads((out / "reports/accuracy.json").read_text())["artifacts"]
    fp32_id, int8_id = "onnx/model.fp32.onnx#ort-plugin", "ort-plugin/model.int8.onnx"
    assert min(o["cosine"] for o in parity[fp32_id]["outputs"].values()) >= 0.9999
    assert min(o["cosine"] for o in parity[int8_id]["outputs"].values()) >= 0.98
    assert accuracy[fp32_id]["backend"] == accuracy[int8_id]["backend"] == "ort-plugin"
    code = ("import edgemm, numpy as np; rt = edgemm.load(%r, backend='ort-plugin', precision='int8'); "
            "print(type(rt._runner).__module__, rt.run({t.name: np.zeros((1, *t.shape[1:]), t.dtype) for t in rt.inputs})['digit'].shape)"
            % str(out))
    r = subprocess.run([sys.executable, "-c", code], env=plugin_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["edgemm_ort_plugin", "(1,", "10)"]
