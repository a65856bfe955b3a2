"""Bad pruning requests through the real CLI (``python -m edgemm export ... --prune ...``): each one is one
``edgemm: error:`` line on stderr, exit code 2, and no bundle folder (nothing half-written)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.paths import RECIPE, ROOT
from prune_tiny import RECIPE as TINY_RECIPE, TinyAttnAV, tiny_samples

HERE = Path(__file__).resolve().parent


def _export(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "edgemm", "-q", "export", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _refused(res: subprocess.CompletedProcess, out: Path, *needles: str) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "Warning" not in ln and not ln.startswith("  ")]
    assert res.returncode == 2, res.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("edgemm: error: "), res.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in res.stderr
    assert not out.exists(), "a refused export left a bundle folder behind"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(out.name)], "a refused export left a temp folder behind"
    return lines[0]


@pytest.mark.parametrize("ratio", ["1.5", "0", "1", "-0.2", "image=1.0"])
def test_ratio_outside_open_interval(tmp_path, ratio):
    out = tmp_path / "b"
    _refused(_export(str(RECIPE), "--prune", ratio, "-o", str(out)), out, "outside (0, 1)")


def test_unknown_branch_close_match(tmp_path):
    out = tmp_path / "b"
    line = _refused(_export(str(RECIPE), "--prune", "imgae=0.5", "-o", str(out)), out, "unknown prune branch 'imgae'")
    assert "did you mean 'image'" in line and "image, audio, fusion" in line


def test_untraceable_model_names_the_module(tmp_path):
    recipe = tmp_path / "untraceable.toml"
    recipe.write_text(TINY_RECIPE.format(name="untraceable", factory="untraceable"))
    out = tmp_path / "b"
    _refused(_export(str(recipe), "--prune", "image=0.5", "-o", str(out)), out,
             "cannot trace module 'img.0.0' (Conv2d) of branch 'image'")


def test_pt2_program_refused_with_what_to_pass(tmp_path):
    m = TinyAttnAV()
    f = tiny_samples(m, 2, seed=0).feeds
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(m, (torch.from_numpy(f["image"]), torch.from_numpy(f["audio"])),
                             dynamic_shapes={"image": {0: batch}, "audio": {0: batch}})
    path = tmp_path / "tiny.pt2"
    torch.export.save(ep, str(path))
    out = tmp_path / "b"
    _refused(_export(str(path), "--prune", "0.5", "-o", str(out)), out, ".pt2", "cannot be pruned", "pass the nn.Module")


def _generator_recipe(tmp_path, options: str) -> Path:
    """The tiny model's recipe with an evaluation file and a [data.training] generator (prune_tiny:generated_training)."""
    ev = tiny_samples(TinyAttnAV(), 48, seed=1)
    np.savez(tmp_path / "eval.npz", **ev.feeds, **ev.labels)
    recipe = tmp_path / "gen.toml"
    recipe.write_text(TINY_RECIPE.format(name="gen", factory="TinyAttnAV") + '\n[data]\nevaluation = "eval.npz"\n\n'
                      '[data.training]\ngenerator = "prune_tiny:generated_training"\n' + options)
    return recipe


def test_generated_training_split_fine_tunes_and_is_reported(tmp_path):
    out = tmp_path / "b"
    res = _export(str(_generator_recipe(tmp_path, "n = 96\nseed = 2\n")), "--prune", "0.5", "--finetune-epochs", "2",
                  "--prune-max-drop", "none", "-o", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    ft = json.loads((out / "reports" / "pruning.json").read_text())["finetune"]
    assert ft["split"] == "prune_tiny:generated_training(n=96, seed=2)" and ft["samples"] == 96 and ft["epochs"] == 2


def test_generator_with_bad_options_is_refused(tmp_path):
    out = tmp_path / "b"
    _refused(_export(str(_generator_recipe(tmp_path, 'n = "many"\n')), "--prune", "0.5", "-o", str(out)), out,
             "the training generator prune_tiny:generated_training raised TypeError")
