"""Parity samples without evaluation data: a plain module with integer inputs is checked on the user's example
inputs (random feeds would give token ids and masks of 0 and 1), a float-only one on random feeds as before."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgemm  # noqa: E402

VOCAB, T = 40, 6


class MaskedMean(torch.nn.Module):
    """Mean of token embeddings over the masked prefix: a row whose mask is all 0 divides by zero."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 8)

    def forward(self, tokens, mask):
        m = mask.unsqueeze(-1).to(torch.float32)
        return (self.embed(tokens) * m).sum(1) / m.sum(1)


def test_integer_inputs_are_checked_on_the_users_examples(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, VOCAB, (3, T)).astype(np.int64)
    mask = (np.arange(T)[None] < np.array([[2], [4], [6]])).astype(np.int64)
    b = edgemm.export(MaskedMean(), example_inputs={"tokens": tokens, "mask": mask}, output=tmp_path / "b",
                      targets=["onnxruntime"], threads=2)
    entry = b.manifest["graphs"]["main"]["parity"]
    assert entry["source"].startswith("the 3 example inputs given to export")
    with np.load(b.root / entry["path"]) as f:
        np.testing.assert_array_equal(f["tokens"], tokens)
        np.testing.assert_array_equal(f["mask"], mask)
    with np.load(b.root / entry["reference_outputs"]) as f:
        assert np.isfinite(f["output_0"]).all()


def test_float_inputs_keep_random_feeds(tmp_path):
    x = np.random.default_rng(1).standard_normal((1, 5)).astype(np.float32)
    b = edgemm.export(torch.nn.Linear(5, 3), example_inputs={"input": x}, output=tmp_path / "b", targets=["onnxruntime"],
                      threads=2)
    assert b.manifest["graphs"]["main"]["parity"]["source"].startswith("random feeds")
