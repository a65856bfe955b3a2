"""Image pre-processing parameters: camera frame (HxWx3 uint8) -> model tensor."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import SpecError
from ..base import OPTIONAL

RESIZE = ("bilinear", "bicubic", "bilinear-pil")
FIT = ("stretch", "center_crop", "letterbox")


@dataclass(frozen=True)
class ImagePreprocess:
    """``resize``: ``bilinear`` (half-pixel centres, as OpenCV INTER_LINEAR: the C kernel), ``bicubic`` or
    ``bilinear-pil`` (Pillow's antialiased filters on 8-bit pixels, as Hugging Face and torchvision processors
    use them). ``fit``: ``stretch`` to ``size``; ``center_crop``: the shortest edge to ``shortest_edge`` (default:
    the larger side of ``size``) keeping the aspect ratio, then the central ``size``; ``letterbox``: the whole
    frame inside ``size`` keeping the aspect ratio, the rest ``pad_value``. Then ``x * rescale`` then
    ``(x - mean) / std``, channels in ``channel_order`` (the model's), ``layout``."""

    size: tuple[int, int] = (64, 64)  # (height, width) of the model input
    channel_order: str = "RGB"  # order the model expects; frames are given as RGB unless the caller says BGR
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # after scaling to [0, 1]
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    layout: str = "NCHW"
    resize: str = "bilinear"
    fit: str = field(default="stretch", metadata=OPTIONAL)
    shortest_edge: int | None = field(default=None, metadata=OPTIONAL)
    pad_value: int = field(default=0, metadata=OPTIONAL)
    rescale: float = field(default=1 / 255, metadata=OPTIONAL)

    def __post_init__(self):
        if (not isinstance(self.size, tuple) or len(self.size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in self.size)):
            raise SpecError(f"image size must be [height, width] of positive integers, not {self.size!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise SpecError(f"image channel_order must be 'RGB' or 'BGR', not {self.channel_order!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise SpecError(f"image layout must be 'NCHW' or 'NHWC', not {self.layout!r}")
        if self.resize not in RESIZE:
            raise SpecError(f"image resize must be one of {', '.join(map(repr, RESIZE))}, not {self.resize!r}")
        if self.fit not in FIT:
            raise SpecError(f"image fit must be one of {', '.join(map(repr, FIT))}, not {self.fit!r}")
        for key in ("mean", "std"):
            v = getattr(self, key)
            if not isinstance(v, tuple) or len(v) != 3 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise SpecError(f"image {key} must be three numbers (one per channel), not {v!r}")
        if any(s == 0 for s in self.std):
            raise SpecError(f"image std must not contain 0, got {list(self.std)}")
        if self.shortest_edge is not None and (not isinstance(self.shortest_edge, int) or isinstance(self.shortest_edge, bool)
                                               or self.shortest_edge < 1):
            raise SpecError(f"image shortest_edge must be a positive integer, not {self.shortest_edge!r}")
        if self.shortest_edge is not None and self.fit != "center_crop":
            raise SpecError(f"image shortest_edge applies to fit = 'center_crop' only, but fit is {self.fit!r}")
        if not isinstance(self.pad_value, int) or isinstance(self.pad_value, bool) or not 0 <= self.pad_value <= 255:
            raise SpecError(f"image pad_value must be an integer 0-255, not {self.pad_value!r}")
        if not isinstance(self.rescale, (int, float)) or isinstance(self.rescale, bool) or not self.rescale > 0:
            raise SpecError(f"image rescale must be a positive number (1/255 for 8-bit frames), not {self.rescale!r}")

    @property
    def plain(self) -> bool:
        """True when the C kernel computes exactly this (a bilinear stretch, x/255)."""
        return self.resize == "bilinear" and self.fit == "stretch" and abs(self.rescale - 1 / 255) < 1e-12
