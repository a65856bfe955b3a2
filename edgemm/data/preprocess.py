"""Dispatch raw modality data to the frontend of an input's pre-processing.

Images and audio go to the compiled kernels of ``edgemm.frontends.native`` when the extension is
built (equal to the numpy reference frontends in edgemm/frontends/image.py and audio.py within float
tolerance), else to the numpy reference itself with a one-time warning."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SpecError
from ..frontends.audio import preprocess_audio
from ..frontends.native import log_mel, preprocess_image
from ..frontends.text import preprocess_text
from ..iospec import AudioPreprocess, ImagePreprocess, TensorSpec, TextPreprocess


def preprocess_input(t: TensorSpec, raw, *, base_dir: Path, sample_rate: int | None = None, batched: bool = False, where: str = "") -> np.ndarray:
    """Raw data for input ``t`` -> model-level tensor with a leading batch axis."""
    pre = t.preprocessing
    prefix = f"{where}: " if where else ""
    if isinstance(pre, ImagePreprocess):
        raw = np.asarray(raw)
        if raw.ndim != (4 if batched else 3):
            raise SpecError(f"{prefix}{t.name!r} expects {'a stack of ' if batched else 'an '}HxWx3 uint8 RGB frame{'s' if batched else ''}, got shape {list(raw.shape)}")
        out = preprocess_image(raw, pre)
    elif isinstance(pre, AudioPreprocess):
        raw = np.asarray(raw)
        if raw.ndim != (2 if batched else 1):
            raise SpecError(f"{prefix}{t.name!r} expects {'[N, samples]' if batched else 'a mono 1-D'} waveform, got shape {list(raw.shape)}")
        out = preprocess_audio(raw, sample_rate or pre.sample_rate, pre, frontend=log_mel)
    elif isinstance(pre, TextPreprocess):
        texts = [str(x) for x in np.asarray(raw).reshape(-1)] if batched else [raw]
        out = np.concatenate([preprocess_text(s, pre, base_dir) for s in texts])
    else:
        raise SpecError(f"{prefix}input {t.name!r} ({t.modality}) has no pre-processing; pass the model-level tensor instead")
    out = out.astype(t.dtype, copy=False)
    # New axes (x[None]) get stride 0; some kernels (PyTorch's conv) take a slow path on such views.
    return out.copy() if 0 in out.strides else out
