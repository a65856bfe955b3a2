"""Fixtures for the pruning stage tests: avnet with its shipped weights and data, a tiny attention model."""
from __future__ import annotations

import pytest

pytest.importorskip("torch_pruning", reason="pruning needs torch-pruning: pip install 'edgemm[prune]'")


@pytest.fixture(scope="session")
def avnet_parts():
    from edgemm.zoo import avnet

    return avnet.build(), avnet.iospec()


@pytest.fixture(scope="session")
def avnet_data(avnet_parts):
    from edgemm.data.datasets import load_samples
    from models.paths import CALIB_NPZ, EVAL_NPZ

    _, spec = avnet_parts
    return load_samples(CALIB_NPZ, spec), load_samples(EVAL_NPZ, spec)


@pytest.fixture
def quiet():
    """A progress sink that records the lines (and lets tests check them)."""
    lines: list[str] = []
    return lines.append, lines
