"""The image frontend: camera frame (HxWx3 uint8, RGB) -> normalised model tensor."""
from __future__ import annotations

from functools import lru_cache

from typing import Any

import numpy as np

from ..errors import SpecError
ImagePreprocess = Any  # edgemm.modalities' params dataclass, duck-typed: the frontends sit below the modalities


@lru_cache(maxsize=32)
def _bilinear_taps(src: int, dst: int):
    """Source indices and weights for half-pixel-centre bilinear resampling (as OpenCV INTER_LINEAR)."""
    scale = src / dst
    pos = (np.arange(dst) + 0.5) * scale - 0.5
    pos = np.clip(pos, 0.0, src - 1)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, src - 1)
    w1 = (pos - i0).astype(np.float32)
    return i0, i1, 1.0 - w1, w1


def resize_bilinear(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """[..., H, W, C] frame(s) -> [..., height, width, C] float32."""
    h, w = frame.shape[-3:-1]
    x = frame.astype(np.float32, copy=False)
    if (h, w) == (height, width):
        return x
    r0, r1, rw0, rw1 = _bilinear_taps(h, height)
    c0, c1, cw0, cw1 = _bilinear_taps(w, width)
    rows = x[..., r0, :, :] * rw0[:, None, None] + x[..., r1, :, :] * rw1[:, None, None]
    return rows[..., c0, :] * cw0[:, None] + rows[..., c1, :] * cw1[:, None]


def preprocess_image(frame: np.ndarray, cfg: ImagePreprocess) -> np.ndarray:
    """RGB frame(s) ``HxWx3`` / ``NxHxWx3`` uint8 -> ``[N, 3, H, W]`` (or NHWC) float32."""
    frame = np.asarray(frame)
    if frame.ndim not in (3, 4) or frame.shape[-1] != 3:
        raise SpecError(f"image must be an HxWx3 RGB frame (or a stack of them), got shape {list(frame.shape)}")
    if 0 in frame.shape[-3:-1]:
        raise SpecError(f"image frames must be at least 1x1 pixels, got shape {list(frame.shape)}")
    if frame.dtype != np.uint8:
        raise SpecError(f"image must be uint8 (0-255), got dtype {frame.dtype}; use frame.astype(np.uint8)")
    x = resize_bilinear(frame, *cfg.size)
    if x.ndim == 3:
        x = x[None]
    if cfg.channel_order == "BGR":
        x = x[..., ::-1]
    mean = np.asarray(cfg.mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(cfg.std, dtype=np.float32) * 255.0)
    x = (x - mean) * inv_std
    if cfg.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)
