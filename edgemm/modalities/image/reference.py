"""The numpy reference of the image modality: resize (+ centre crop or letterbox), rescale, mean/std, layout."""
from __future__ import annotations

import numpy as np

from ...errors import SpecError
from ...frontends.image import resize_bilinear
from .params import ImagePreprocess
from .resample import resize_pil


def check_frames(frame) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim not in (3, 4) or frame.shape[-1] != 3:
        raise SpecError(f"image must be an HxWx3 frame (or a stack of them), got shape {list(frame.shape)}")
    if 0 in frame.shape[-3:-1]:
        raise SpecError(f"image frames must be at least 1x1 pixels, got shape {list(frame.shape)}")
    if frame.dtype != np.uint8:
        raise SpecError(f"image must be uint8 (0-255), got dtype {frame.dtype}; use frame.astype(np.uint8)")
    return frame


def _resize(frame: np.ndarray, height: int, width: int, kind: str) -> np.ndarray:
    if kind == "bilinear":
        return resize_bilinear(frame, height, width)
    return resize_pil(frame, height, width, kind)


def resized_size(h: int, w: int, cfg: ImagePreprocess) -> tuple[int, int]:
    """The size the frame is resized to before a crop or a pad (Hugging Face's ``shortest_edge`` arithmetic)."""
    if cfg.fit == "center_crop":
        short = cfg.shortest_edge or max(cfg.size)
        if h <= w:
            return short, int(short * w / h)
        return int(short * h / w), short
    if cfg.fit == "letterbox":
        scale = min(cfg.size[0] / h, cfg.size[1] / w)
        return max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    return cfg.size


def center_crop(x: np.ndarray, height: int, width: int, pad_value: float = 0) -> np.ndarray:
    """The central ``height x width`` of ``[..., H, W, C]`` (padded with ``pad_value`` where the frame is smaller)."""
    h, w = x.shape[-3:-1]
    if h < height or w < width:
        ph, pw = max(0, height - h), max(0, width - w)
        pad = [(0, 0)] * (x.ndim - 3) + [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)]
        x = np.pad(x, pad, constant_values=pad_value)
        h, w = x.shape[-3:-1]
    top, left = (h - height) // 2, (w - width) // 2
    return x[..., top:top + height, left:left + width, :]


def letterbox(x: np.ndarray, height: int, width: int, pad_value: float) -> np.ndarray:
    h, w = x.shape[-3:-1]
    top, left = (height - h) // 2, (width - w) // 2
    out = np.full((*x.shape[:-3], height, width, x.shape[-1]), pad_value, dtype=x.dtype)
    out[..., top:top + h, left:left + w, :] = x
    return out


def preprocess_image(frame, cfg: ImagePreprocess, color: str = "RGB") -> np.ndarray:
    """Frame(s) ``HxWx3`` / ``NxHxWx3`` uint8 in ``color`` order -> ``[N, 3, H, W]`` (or NHWC) float32."""
    frame = check_frames(frame)
    if color not in ("RGB", "BGR"):
        raise SpecError(f"image color must be 'rgb' or 'bgr', not {color!r}")
    if color != cfg.channel_order:
        frame = frame[..., ::-1]
    h, w = frame.shape[-3:-1]
    rh, rw = resized_size(h, w, cfg)
    x = _resize(frame, rh, rw, cfg.resize)
    if cfg.fit == "center_crop":
        x = center_crop(x, *cfg.size)
    elif cfg.fit == "letterbox":
        x = letterbox(x, *cfg.size, cfg.pad_value)
    if x.ndim == 3:
        x = x[None]
    mean = np.asarray(cfg.mean, np.float32)
    std = np.asarray(cfg.std, np.float32)
    if cfg.plain:  # the C kernel's arithmetic (mean and std scaled to 0-255)
        x = (x.astype(np.float32, copy=False) - mean * 255.0) * (1.0 / (std * 255.0))
    else:  # Hugging Face's: rescale in float64, then normalise in float32
        x = ((x.astype(np.float64) * cfg.rescale).astype(np.float32) - mean) / std
    if cfg.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)
