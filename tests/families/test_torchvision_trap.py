"""The torchvision trap: PyPI's torchvision for Linux is a CUDA build that fails to import beside a CPU torch
(``operator torchvision::nms does not exist``) and transformers' CLIP then fails to import too. edgemm does not
need torchvision: the export fails in one line saying `pip uninstall torchvision` or the CPU wheel to install.

The broken install is reproduced by a package named torchvision (with its .dist-info, so that transformers sees
it installed) whose import raises what the CUDA wheel raises; the slow test uses the registry's real wheel."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("transformers")

from models.paths import ROOT  # noqa: E402

from hf_tiny import save_clip  # noqa: E402


def _broken_torchvision(site):
    (site / "torchvision").mkdir(parents=True)
    (site / "torchvision" / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    info = site / "torchvision-0.28.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n")


def _export(site, folder, out):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "edgemm", "export", str(folder), "-o", str(out)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def _check(run, out):
    assert run.returncode == 2, run.stderr[-3000:]
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("edgemm: error: cannot import Hugging Face CLIP: torchvision fails to import"), line
    assert "torchvision::nms" in line and "`pip uninstall torchvision`" in line
    assert "--index-url https://download.pytorch.org/whl/cpu" in line and "torchvision==0." in line
    assert not out.exists()


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip") / "clip"
    save_clip(folder)
    return folder


def test_a_broken_torchvision_is_one_line(clip_folder, tmp_path):
    _broken_torchvision(tmp_path / "site")
    _check(_export(tmp_path / "site", clip_folder, tmp_path / "b"), tmp_path / "b")


@pytest.mark.slow
def test_the_registrys_torchvision_wheel_is_one_line(clip_folder, tmp_path):
    """The real CUDA wheel (pip install --no-deps into a folder of its own; the venv is not touched)."""
    import torch

    minor = int(torch.__version__.split(".")[1])
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                          f"torchvision==0.{minor + 15}.*"], capture_output=True, text=True, timeout=600)
    if pip.returncode != 0:
        pytest.skip(f"no torchvision wheel to install here: {pip.stderr.strip().splitlines()[-1:]}")
    probe = subprocess.run([sys.executable, "-c", "import torchvision"], env={**os.environ, "PYTHONPATH": str(site)},
                           capture_output=True, text=True, timeout=300)
    if probe.returncode == 0:
        pytest.skip("this torchvision wheel imports beside this torch: no trap to show")
    _check(_export(site, clip_folder, tmp_path / "b"), tmp_path / "b")
