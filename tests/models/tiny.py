"""A tiny two-input, two-head model for fast API tests (image-like + audio-like tensors).

Module-level classes so that torch.export programs made from them can be saved and reloaded.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgemm.iospec import IOSpec, TensorSpec

IMAGE_SHAPE = (3, 8, 8)
AUDIO_SHAPE = (1, 8, 10)
N_CLASSES = 4
N_SPEAKERS = 3


class TinyAV(nn.Module):
    """image [B, 3, 8, 8] + audio [B, 1, 8, 10] -> (cls [B, 4], spk [B, 3])."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.img = nn.Conv2d(3, 6, 3, padding=1)
        self.aud = nn.Conv2d(1, 6, 3, padding=1)
        self.fuse = nn.Linear(12, 16)
        self.cls = nn.Linear(16, N_CLASSES)
        self.spk = nn.Linear(16, N_SPEAKERS)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.eval()

    def forward(self, image: torch.Tensor, audio: torch.Tensor):
        i = torch.relu(self.img(image)).mean(dim=(2, 3))
        a = torch.relu(self.aud(audio)).mean(dim=(2, 3))
        z = torch.tanh(self.fuse(torch.cat([i, a], dim=1)))
        return self.cls(z), self.spk(z)


class RaisingAV(TinyAV):
    """Raises in forward(): an export of it must fail without leaving anything behind."""

    def forward(self, image: torch.Tensor, audio: torch.Tensor):
        raise RuntimeError("boom: this model cannot run")


def tiny_spec(batch_axis: str = "batch") -> IOSpec:
    return IOSpec(
        inputs=(
            TensorSpec("image", "float32", (batch_axis, *IMAGE_SHAPE), "tensor"),
            TensorSpec("audio", "float32", (batch_axis, *AUDIO_SHAPE), "tensor"),
        ),
        outputs=(
            TensorSpec("cls", "float32", (batch_axis, N_CLASSES), labels=tuple("abcd")),
            TensorSpec("spk", "float32", (batch_axis, N_SPEAKERS), labels=("x", "y", "z")),
        ),
    )


def tiny_feeds(batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.standard_normal((batch, *IMAGE_SHAPE)).astype(np.float32),
        "audio": rng.standard_normal((batch, *AUDIO_SHAPE)).astype(np.float32),
    }


def torch_outputs(model: nn.Module, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["audio"]))
    return [o.numpy() for o in out]
