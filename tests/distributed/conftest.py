"""The torchrun tests (helpers in dist_launch.py): real launches of the real CLI on the tiny attention model of
tests/prune; this file adds tests/prune to the path and writes the tiny recipe."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch_pruning", reason="pruning needs torch-pruning: pip install 'edgemm[prune]'")

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(TESTS / "prune"))  # prune_tiny (the tiny model, its recipe and generator)


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
