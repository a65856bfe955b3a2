"""The modality seam, proven with a separate package: examples/modality_plugin registers the ``imu`` modality
through the ``edgemm.modalities`` entry point. pip-installed into a target folder (the test environment is not
changed), a small IMU model exports with an ``imu`` input, verifies, and streams from a CSV file through the
plugin's ``imu-csv:`` URI; ``edgemm verify`` on the bundle passes. No file under edgemm/ names it."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "modality_plugin"
HERE = Path(__file__).resolve().parent


def test_no_edgemm_file_names_the_plugin():
    hits = [str(p) for p in (ROOT / "edgemm").rglob("*.py")
            if re.search(r"\bimu\b|edgemm_imu|imu-csv", p.read_text(), flags=re.IGNORECASE)]
    assert hits == []


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("modality-plugin")
    src = tmp / "src"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))  # pip builds in place
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(src)],
                   check=True, capture_output=True, text=True)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))


def _csv(path: Path, seconds: float = 3.0, rate: int = 200) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(3)
    acc = np.stack([np.sin(2 * np.pi * 1.5 * t), 0.5 * np.cos(2 * np.pi * 0.7 * t), 9.81 + np.sin(2 * np.pi * 3 * t)], 1)
    gyr = rng.normal(0, 0.2, (len(t), 3))
    rows = np.concatenate([t[:, None], acc, gyr], 1)
    path.write_text("t,ax,ay,az,gx,gy,gz\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows) + "\n")
    return path


def test_export_verify_stream_with_the_plugin(plugin_env, tmp_path):
    out, csv = tmp_path / "bundle", _csv(tmp_path / "walk.csv")
    r = subprocess.run([sys.executable, str(HERE / "imu_script.py"), str(out), str(csv)], env=plugin_env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["results"] == 1 + (600 - 200) // 50 and summary["parity"]
    r = subprocess.run([sys.executable, "-m", "edgemm", "verify", str(out)], env=plugin_env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    parity = json.loads((out / "reports/parity.json").read_text())
    assert min(o["cosine"] for a in parity["artifacts"].values() for o in a["outputs"].values()) >= 0.9999


def test_without_the_plugin_the_bundle_says_what_is_missing(plugin_env, tmp_path):
    """The same manifest read where the plugin is not installed: one line naming the modality."""
    r = subprocess.run([sys.executable, "-c", "from edgemm.iospec import TensorSpec; TensorSpec.from_dict({'name': 'm', "
                        "'modality': 'imu', 'shape': [1, 6, 200], 'preprocessing': {'rate': 200}}, 'input')"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "unknown modality 'imu'" in r.stderr and "edgemm.modalities entry point" in r.stderr
    r = subprocess.run([sys.executable, "-c", "from edgemm.iospec import TensorSpec; TensorSpec.from_dict({'name': 'm', "
                        "'modality': 'imu', 'shape': [1, 6, 200], 'preprocessing': {'rate': 1000}}, 'input')"],
                       env=plugin_env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "imu rate must be an integer from 100 to 400 Hz" in r.stderr.strip().splitlines()[-1]
