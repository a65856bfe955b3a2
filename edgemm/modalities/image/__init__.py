"""The image modality: a camera frame (HxWx3 uint8, RGB, or BGR as OpenCV gives it) -> a normalised tensor.

Resize bilinear (the C kernel of ``edgemm.frontends.native``) or Pillow's bicubic / bilinear, stretch, centre
crop or letterbox, rescale, mean/std, RGB/BGR, NCHW/NHWC (see ``params.ImagePreprocess``)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import SpecError
from ..base import Context, Modality, StreamAdapter, unknown_options
from .params import ImagePreprocess
from .reference import preprocess_image

COLORS = ("RGB", "BGR")


def color_option(value) -> str:
    """``"rgb"`` / ``"BGR"`` ... -> ``RGB`` / ``BGR`` (None: RGB)."""
    if value is None:
        return "RGB"
    if not isinstance(value, str) or value.upper() not in COLORS:
        raise SpecError(f"image color must be 'rgb' or 'bgr' (OpenCV frames are bgr), not {value!r}")
    return value.upper()


def frames(batch: int, height: int, width: int, seed: int) -> np.ndarray:
    """``[batch, height, width, 3]`` uint8: smooth colour gradients with noise (camera-like frames)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, height, dtype=np.float32), np.linspace(0, 1, width, dtype=np.float32), indexing="ij")
    out = np.empty((batch, height, width, 3), np.uint8)
    for b in range(batch):
        a = rng.uniform(-1, 1, (3, 3)).astype(np.float32)
        base = 0.5 + 0.4 * np.tanh(a[:, :1, None] * xx + a[:, 1:2, None] * yy + a[:, 2:3, None])
        pixels = np.clip(base + rng.normal(0, 0.08, (3, height, width)), 0, 1)
        out[b] = np.round(pixels * 255).astype(np.uint8).transpose(1, 2, 0)
    return out


def normalised_images(batch: int, size: tuple[int, int], mean: Sequence[float], std: Sequence[float], seed: int,
                      channels: int = 3) -> np.ndarray:
    """Normalised NCHW images, like frames after ``(x / 255 - mean) / std`` (any number of channels)."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.meshgrid(np.linspace(0, 1, h, dtype=np.float32), np.linspace(0, 1, w, dtype=np.float32), indexing="ij")
    out = np.empty((batch, channels, h, w), np.float32)
    for b in range(batch):
        a = rng.uniform(-1, 1, (channels, 3)).astype(np.float32)
        base = 0.5 + 0.4 * np.tanh(a[:, :1, None] * xx + a[:, 1:2, None] * yy + a[:, 2:3, None])
        pixels = np.clip(base + rng.normal(0, 0.08, (channels, h, w)), 0, 1)
        pixels = np.round(pixels * 255) / 255  # 8-bit frames
        m = np.asarray(mean, np.float32).reshape(-1, 1, 1)[:channels]
        s = np.asarray(std, np.float32).reshape(-1, 1, 1)[:channels]
        out[b] = (pixels - m) / s
    return out


class ImageAdapter(StreamAdapter):
    """Stream frames (RGB or BGR, as the source says) -> the input's tensor; the C kernel for a bilinear
    stretch (channel swap fused), the reference otherwise."""

    def __init__(self, cfg: ImagePreprocess):
        from ...frontends import native

        self.cfg = cfg
        self.out_shape = native.image_out_shape(cfg, 1)
        swap = {"RGB": "BGR", "BGR": "RGB"}
        self.kernels = {"RGB": native.ImageKernel(cfg),
                        "BGR": native.ImageKernel(dataclasses.replace(cfg, channel_order=swap[cfg.channel_order]))} if cfg.plain else None

    def __call__(self, frame, out: np.ndarray | None = None) -> np.ndarray:
        image, order = (frame.image, frame.order) if hasattr(frame, "image") else (frame, "RGB")
        if self.kernels is not None:
            return self.kernels[order](image, out)
        res = preprocess_image(image, self.cfg, order)
        if out is None:
            return res
        out[...] = res
        return out


class ImageModality(Modality):
    name = "image"
    description = "camera frames (HxWx3 uint8 RGB/BGR): resize bilinear/bicubic, stretch/centre crop/letterbox, mean/std"
    params = ImagePreprocess
    options = ("color",)
    paced = True

    def preprocess(self, t, raw, ctx: Context) -> dict[str, np.ndarray]:
        unknown_options(self, ctx)
        cfg: ImagePreprocess = t.preprocessing
        color = color_option(ctx.options.get("color"))
        arr = np.asarray(raw)
        if arr.ndim != (4 if ctx.batched else 3):
            raise SpecError(f"{ctx.prefix}{t.name!r} expects {'a stack of ' if ctx.batched else 'an '}HxWx3 uint8 "
                            f"{'frames' if ctx.batched else 'frame'} ({color}), got shape {list(arr.shape)}")
        kernel = self.kernel(cfg, color)
        out = kernel(arr) if kernel is not None else preprocess_image(arr, cfg, color)
        return {t.name: out}

    def kernel(self, pre, color: str = "RGB"):
        """The C kernel for a bilinear stretch of frames in ``color`` order (None for the other fits/filters)."""
        if not pre.plain:
            return None
        from ...frontends import native

        cfg = pre if color == pre.channel_order else dataclasses.replace(pre, channel_order={"RGB": "BGR", "BGR": "RGB"}[pre.channel_order])
        return lambda frame, out=None: native.preprocess_image(frame, cfg, out)

    def generate(self, t, batch: int, seed: int, base_dir: Path | None = None) -> dict[str, np.ndarray]:
        cfg = t.preprocessing
        if cfg is None:
            raise SpecError(f"image input {t.name!r} has no preprocessing to generate frames for")
        h, w = cfg.size
        raw = frames(batch, max(8, h * 5 // 4), max(8, w * 3 // 2), seed)  # a larger, wider frame: the fit does work
        return {t.name: preprocess_image(raw, cfg).astype(t.dtype, copy=False)}

    def raw_example(self, t, seed: int = 0, base_dir: Path | None = None):
        h, w = t.preprocessing.size if t.preprocessing is not None else (32, 32)
        return frames(1, max(8, h * 5 // 4), max(8, w * 3 // 2), seed)[0]

    def stream_adapter(self, t, *, base_dir: Path | None = None) -> StreamAdapter:
        return ImageAdapter(t.preprocessing)


MODALITY = ImageModality()
__all__ = ["ImagePreprocess", "ImageModality", "MODALITY", "preprocess_image", "frames", "normalised_images", "color_option"]
