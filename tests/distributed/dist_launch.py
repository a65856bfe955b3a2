"""Launching the CLI under torchrun (``python -m torch.distributed.run``, gloo on this CPU) and reading what a
launch printed and left behind."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from models.paths import ROOT

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent


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
