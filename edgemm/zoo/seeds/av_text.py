"""``seed_av_text``: speech, a caption and a frame -> the digit, with learned weighted fusion.

Inputs: ``image`` [batch, 3, 32, 32], ``audio`` [batch, 1, 32, 49] (log-mel of the 1.0 s window at 8 kHz) and
``caption`` [batch, 8] int64 (a caption with partial information). Output: ``digit`` (10 logits).
Each modality is encoded to a 64-wide embedding; a shared scorer gives each embedding a score, a softmax over
the three scores gives per-sample modality weights, and the weighted sum of the embeddings is classified.
A corrupted frame or a noisy recording gets a lower weight than the clean modality beside it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..avmnist import DIGITS
from .blocks import CHECKPOINTS, AudioEncoder, CaptionEncoder, ImageEncoder, load_weights
from .captions import caption_words

NAME = "seed_av_text"
CHECKPOINT = CHECKPOINTS / f"{NAME}.pt"
INPUTS = ("image", "audio", "caption")


class WeightedFusion(nn.Module):
    """[B, M, dim] modality embeddings -> ([B, dim] softmax-weighted sum, [B, M] the weights)."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, 32), nn.Tanh(), nn.Linear(32, 1))

    def forward(self, e: torch.Tensor):
        w = torch.softmax(self.score(e).squeeze(-1), dim=1)
        return (w.unsqueeze(-1) * e).sum(dim=1), w


class AVTextNet(nn.Module):
    def __init__(self, dim: int = 64):
        super().__init__()
        self.image = ImageEncoder(dim)
        self.audio = AudioEncoder(dim)
        self.caption = CaptionEncoder(len(caption_words()) + 2, dim)
        # per-modality projection into one space (the weighted sum adds the embeddings up)
        self.proj = nn.ModuleList([nn.Linear(dim, dim) for _ in INPUTS])
        self.fusion = WeightedFusion(dim)
        self.head = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(inplace=True), nn.Dropout(0.1), nn.Linear(64, len(DIGITS)))

    def embeddings(self, image, audio, caption) -> torch.Tensor:
        parts = (self.image(image), self.audio(audio), self.caption(caption))
        return torch.stack([torch.tanh(p(x)) for p, x in zip(self.proj, parts)], dim=1)

    def forward(self, image: torch.Tensor, audio: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
        z, _ = self.fusion(self.embeddings(image, audio, caption))
        return self.head(z)

    def modality_weights(self, image, audio, caption) -> torch.Tensor:
        """[B, 3] fusion weights (image, audio, caption): what the model relies on per sample."""
        return self.fusion(self.embeddings(image, audio, caption))[1]


def build(checkpoint=CHECKPOINT) -> AVTextNet:
    return load_weights(AVTextNet(), checkpoint, NAME)
