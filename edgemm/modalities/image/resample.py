"""Pillow-compatible resampling of 8-bit frames (``Image.resize`` with BICUBIC / BILINEAR), in numpy.

Pillow's filters are antialiased (the kernel widens by the downscale factor), computed in fixed point with
22 fractional bits, horizontal pass first, each pass rounded and clipped to 8 bits. Hugging Face's slow image
processors and torchvision's PIL path resize that way, so a bundle that must reproduce them does the same
integer arithmetic (libImaging/Resample.c)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

PRECISION_BITS = 32 - 8 - 2


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    return np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1,
                    np.where(x < 2.0, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


FILTERS = {"bicubic": (_bicubic, 2.0), "bilinear-pil": (_triangle, 1.0)}


@lru_cache(maxsize=64)
def coefficients(in_size: int, out_size: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``(index [out, k], weight [out, k] int64)``: Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc``."""
    fn, support0 = FILTERS[kind]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support0 * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    idx = np.zeros((out_size, ksize), np.intp)
    w = np.zeros((out_size, ksize), np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        x = np.arange(xmax)
        k = fn((x + xmin - center + 0.5) / filterscale)
        total = float(np.cumsum(k)[-1]) if xmax else 0.0  # summed in order, as the C loop does
        if total != 0.0:
            k = k / total
        fixed = np.where(k < 0, np.trunc(-0.5 + k * (1 << PRECISION_BITS)), np.trunc(0.5 + k * (1 << PRECISION_BITS)))
        idx[xx, :xmax] = xmin + x
        w[xx, :xmax] = fixed.astype(np.int64)
    idx.setflags(write=False)
    w.setflags(write=False)
    return idx, w


def _pass(x: np.ndarray, axis: int, out_size: int, kind: str) -> np.ndarray:
    idx, w = coefficients(x.shape[axis], out_size, kind)
    taken = np.take(x.astype(np.int64, copy=False), idx, axis=axis)  # axis -> (out, k)
    shape = [1] * taken.ndim
    shape[axis], shape[axis + 1] = w.shape
    acc = (taken * w.reshape(shape)).sum(axis=axis + 1) + (1 << (PRECISION_BITS - 1))
    return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)


def resize_pil(frame: np.ndarray, height: int, width: int, kind: str) -> np.ndarray:
    """[..., H, W, C] uint8 -> [..., height, width, C] uint8, the numbers ``PIL.Image.resize`` gives."""
    h, w = frame.shape[-3:-1]
    x = frame
    if w != width:
        x = _pass(x, x.ndim - 2, width, kind)
    if h != height:
        x = _pass(x, x.ndim - 3, height, kind)
    return x
