"""The ``tensor`` modality: a model-level array the caller makes itself (no pre-processing)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import SpecError
from ..base import Context, Modality


class TensorModality(Modality):
    name = "tensor"
    description = "model-level arrays passed as they are (no pre-processing)"
    params = None

    def preprocess(self, t, raw, ctx: Context) -> dict[str, np.ndarray]:
        raise SpecError(f"{ctx.prefix}input {t.name!r} (tensor) has no pre-processing; pass the model-level tensor instead")

    def generate(self, t, batch: int, seed: int, base_dir: Path | None = None) -> dict[str, np.ndarray]:
        """Float inputs: standard normal. Integer inputs named like a mask: prefix masks (ones over a random
        length, then zeros); other integers: 0 or 1 (all that is known of them)."""
        rng = np.random.default_rng(seed)
        shape = t.concrete_shape(batch)
        if np.issubdtype(np.dtype(t.dtype), np.integer):
            if "mask" in t.name.lower() and len(shape) == 2:
                lengths = rng.integers(1, shape[1] + 1, size=shape[0])
                return {t.name: (np.arange(shape[1])[None, :] < lengths[:, None]).astype(t.dtype)}
            return {t.name: rng.integers(0, 2, size=shape).astype(t.dtype)}
        return {t.name: rng.standard_normal(shape).astype(t.dtype)}


MODALITY = TensorModality()
