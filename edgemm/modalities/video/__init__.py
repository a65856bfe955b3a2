"""The video modality: a clip of ``frames`` camera frames -> ``[N, T, 3, H, W]`` (``NTCHW``) or ``[N, 3, T, H, W]``
(``NCTHW``). Each frame gets the image modality's pre-processing; ``Stream`` buffers the last ``frames`` frames
(every ``stride``-th frame of the source) and runs the model on the clip at every frame."""
from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from ...errors import SpecError
from ..base import Context, Modality, StreamAdapter, unknown_options
from ..image import ImageAdapter, color_option, frames as image_frames, preprocess_image
from .params import VideoPreprocess


class ClipAdapter(StreamAdapter):
    """Buffers the pre-processed frames of a stream and gives the clip of the last ``frames`` (every ``stride``-th).
    Until the buffer is full the oldest frame is repeated and ``padded`` is True (the stream flags the result)."""

    def __init__(self, cfg: VideoPreprocess):
        self.cfg = cfg
        self.image = ImageAdapter(cfg.image)
        self.ring: deque = deque(maxlen=(cfg.frames - 1) * cfg.stride + 1)
        h, w = cfg.size
        self.out_shape = (1, cfg.frames, 3, h, w) if cfg.clip_layout == "NTCHW" else (1, 3, cfg.frames, h, w)
        self.padded = True

    def __call__(self, frame, out: np.ndarray | None = None) -> np.ndarray:
        self.ring.append(self.image(frame)[0].copy())
        have = list(self.ring)[::-1][::self.cfg.stride][::-1]  # the newest frame last, every stride-th back from it
        self.padded = len(have) < self.cfg.frames
        clip = np.stack([have[0]] * (self.cfg.frames - len(have)) + have)[None]
        res = self.cfg.arrange(clip)
        if out is None:
            return res
        out[...] = res
        return out


class VideoModality(Modality):
    name = "video"
    description = "clips of T frames (each pre-processed like an image), buffered frame by frame by Stream"
    params = VideoPreprocess
    options = ("color",)
    paced = True

    def preprocess(self, t, raw, ctx: Context) -> dict[str, np.ndarray]:
        unknown_options(self, ctx)
        cfg: VideoPreprocess = t.preprocessing
        arr = np.asarray(raw)
        clips = arr[None] if arr.ndim == 4 and not ctx.batched else arr
        n = (cfg.frames - 1) * cfg.stride + 1
        if clips.ndim != 5 or clips.shape[1] < n:
            raise SpecError(f"{ctx.prefix}{t.name!r} expects a clip of {cfg.frames} frames (TxHxWx3 uint8"
                            f"{f', every {cfg.stride}-th of {(cfg.frames - 1) * cfg.stride + 1}' if cfg.stride > 1 else ''}), "
                            f"got shape {list(arr.shape)}")
        picked = clips[:, clips.shape[1] - n::cfg.stride]
        color = color_option(ctx.options.get("color"))
        per = preprocess_image(picked.reshape(-1, *picked.shape[2:]), cfg.image, color)
        return {t.name: cfg.arrange(per.reshape(clips.shape[0], cfg.frames, *per.shape[1:])).astype(t.dtype, copy=False)}

    def generate(self, t, batch: int, seed: int, base_dir: Path | None = None) -> dict[str, np.ndarray]:
        cfg: VideoPreprocess = t.preprocessing
        return self.preprocess(t, self._clips(cfg, batch, seed), Context(batched=True))

    @staticmethod
    def _clips(cfg: VideoPreprocess, batch: int, seed: int) -> np.ndarray:
        h, w = cfg.size
        n = (cfg.frames - 1) * cfg.stride + 1
        base = image_frames(batch, h + n, w + n, seed)
        return np.stack([base[:, k:k + h, k:k + w] for k in range(n)], axis=1)  # a panning camera

    def raw_example(self, t, seed: int = 0, base_dir: Path | None = None):
        return self._clips(t.preprocessing, 1, seed)[0]

    def stream_adapter(self, t, *, base_dir: Path | None = None) -> StreamAdapter:
        return ClipAdapter(t.preprocessing)


MODALITY = VideoModality()
__all__ = ["VideoPreprocess", "VideoModality", "ClipAdapter", "MODALITY"]
