"""The torchrun tests: real launches (``python -m torch.distributed.run``, gloo on this CPU) of the real CLI on
the tiny attention model of tests/prune; helpers to read what a launch printed and left behind."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch_pruning", reason="pruning needs torch-pruning: pip install 'edgemm[prune]'")

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(TESTS / "prune"))  # prune_tiny (the tiny model, its recipe and generator)

from models.paths import ROOT  # noqa: E402


def launch_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), str(TESTS / "prune"), str(HERE), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def torchrun(cwd: Path, *args: str, nproc: int = 2, timeout: int = 240, **env: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node N -m edgemm ARGS`` (standalone: a free port of its own)."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                           "-m", "edgemm", *args], cwd=cwd, env=launch_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def edgemm_lines(stderr: str) -> list[str]:
    """The lines edgemm printed (torchrun adds its own failure summary and warnings around them)."""
    return [ln for ln in stderr.splitlines() if ln.startswith("edgemm:")]


def leftovers(folder: Path, name: str) -> list[str]:
    """Anything named after the bundle beside it: the bundle itself or a staging/old folder."""
    return sorted(p.name for p in folder.iterdir() if p.name == name or p.name.startswith(f".{name}."))


@pytest.fixture
def tiny_recipe(tmp_path):
    """Write the tiny recipe (a factory and a [data.training] table) with its evaluation file; returns a writer."""
    import numpy as np

    import dist_tiny
    from prune_tiny import TinyAttnAV, tiny_samples

    ev = tiny_samples(TinyAttnAV(), 48, seed=1)
    np.savez(tmp_path / "eval.npz", **ev.feeds, **ev.labels)

    def write(name: str = "tiny.toml", **kw) -> Path:
        path = tmp_path / name
        path.write_text(dist_tiny.recipe(**kw))
        return path

    return write
