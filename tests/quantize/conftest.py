"""A two-branch model and data built so that INT8 breaks it in a known, controllable way.

``TwoBranch``: a [B, 8] -> Linear -> ReLU, b [B, 8] -> Linear -> ReLU, concat -> Linear -> ``cls``.
Labels are the fp32 model's own predictions, so the fp32 top-1 is exactly 1.0. Calibration
data with huge outliers in an input stretches its activation ranges so far that every quantized
layer downstream of it rounds real inputs to nothing: INT8 accuracy collapses until those
layers are kept float. Outliers in ``a`` only: keeping layers float can repair it. Outliers in
both inputs: every weighted layer is broken and no INT8 model can meet a tight budget.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from edgemm.iospec import IOSpec, TensorSpec

N = 200


class TwoBranch(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fa = nn.Linear(8, 16)
        self.fb = nn.Linear(8, 16)
        self.head = nn.Linear(32, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.eval()

    def forward(self, a: torch.Tensor, b: torch.Tensor):
        return self.head(torch.cat([torch.relu(self.fa(a)), torch.relu(self.fb(b))], dim=1))


def two_branch_spec() -> IOSpec:
    return IOSpec(
        inputs=(TensorSpec("a", "float32", ("batch", 8)), TensorSpec("b", "float32", ("batch", 8))),
        outputs=(TensorSpec("cls", "float32", ("batch", 4), labels=("w", "x", "y", "z")),),
    )


def _feeds(seed: int, n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal((n, 8)).astype(np.float32), "b": rng.standard_normal((n, 8)).astype(np.float32)}


@pytest.fixture
def two_branch_data(tmp_path):
    """Factory: data(outliers=("a",)) -> (model, spec, calib_npz, eval_npz)."""

    def make(outliers=()):
        model = TwoBranch(0)
        spec = two_branch_spec()
        ev = _feeds(1)
        with torch.no_grad():
            labels = model(torch.from_numpy(ev["a"]), torch.from_numpy(ev["b"])).argmax(1).numpy()
        cal = _feeds(2)
        for name in outliers:
            cal[name][:5] *= 2000.0  # a handful of wild samples stretch the calibrated range
        calib = tmp_path / f"calib_{'_'.join(outliers) or 'clean'}.npz"
        evaluation = tmp_path / "eval.npz"
        np.savez(calib, **cal)
        np.savez(evaluation, **ev, cls=labels)
        return model, spec, calib, evaluation

    return make


@pytest.fixture
def edgemm_log():
    """Records what edgemm logs (the CLI turns propagation off, so caplog cannot be relied on)."""
    records: list[logging.LogRecord] = []

    class H(logging.Handler):
        def emit(self, record):
            records.append(record)

    log = logging.getLogger("edgemm")
    h = H(level=logging.DEBUG)
    old = log.level
    log.addHandler(h)
    log.setLevel(logging.INFO)
    yield records
    log.removeHandler(h)
    log.setLevel(old)
