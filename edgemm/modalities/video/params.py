"""Video clip pre-processing parameters."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import SpecError
from ..base import OPTIONAL
from ..image.params import ImagePreprocess


@dataclass(frozen=True)
class VideoPreprocess:
    """A clip's frames: ``frames`` (T) every ``stride``-th frame, each pre-processed like an image input."""

    frames: int = 8
    stride: int = 1
    clip_layout: str = "NTCHW"
    size: tuple[int, int] = (64, 64)
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    resize: str = "bilinear"
    fit: str = field(default="stretch", metadata=OPTIONAL)
    shortest_edge: int | None = field(default=None, metadata=OPTIONAL)
    pad_value: int = field(default=0, metadata=OPTIONAL)
    rescale: float = field(default=1 / 255, metadata=OPTIONAL)

    def __post_init__(self):
        for key in ("frames", "stride"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"video {key} must be a positive integer, not {v!r}")
        if self.clip_layout not in ("NTCHW", "NCTHW"):
            raise SpecError(f"video clip_layout must be 'NTCHW' or 'NCTHW', not {self.clip_layout!r}")
        self.image  # the per-frame parameters are checked by the image modality

    @property
    def image(self) -> ImagePreprocess:
        return ImagePreprocess(size=self.size, channel_order=self.channel_order, mean=self.mean, std=self.std, layout="NCHW",
                               resize=self.resize, fit=self.fit, shortest_edge=self.shortest_edge, pad_value=self.pad_value,
                               rescale=self.rescale)

    def arrange(self, per_frame: np.ndarray) -> np.ndarray:
        """``[N, T, 3, H, W]`` -> the clip layout."""
        return per_frame if self.clip_layout == "NTCHW" else np.ascontiguousarray(per_frame.transpose(0, 2, 1, 3, 4))
