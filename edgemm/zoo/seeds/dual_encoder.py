"""``seed_dual_encoder``: a CLIP-style image tower and text tower trained contrastively on frames and prompts.

Two graphs in one bundle: ``image`` (input ``image`` [batch, 3, 32, 32] -> ``image_embedding`` [batch, 32])
and ``text`` (input ``prompt`` [batch, 8] int64 token ids of a prompt such as "a photo of the digit seven" ->
``text_embedding`` [batch, 32]); both embeddings are L2-normalised, so their dot product is the cosine.
Zero-shot classification (``zero_shot``): the text graph embeds every class prompt once, the class embedding
is the normalised mean over templates, and a frame's class is the most similar one.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import CHECKPOINTS, ImageEncoder, load_weights
from .captions import prompt_words

NAME = "seed_dual_encoder"
CHECKPOINT = CHECKPOINTS / f"{NAME}.pt"
EMBED = 32


def normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)


class ImageTower(nn.Module):
    def __init__(self, dim: int = 64):
        super().__init__()
        self.encoder = ImageEncoder(dim)
        self.proj = nn.Linear(dim, EMBED)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return normalise(self.proj(self.encoder(image)))


class TextTower(nn.Module):
    """Token embeddings averaged over the non-padding tokens, then a two-layer MLP."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.embed = nn.Embedding(len(prompt_words()) + 2, dim, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, EMBED))

    def forward(self, prompt: torch.Tensor) -> torch.Tensor:
        mask = (prompt != 0).unsqueeze(-1).to(torch.float32)
        pooled = (self.embed(prompt) * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        return normalise(self.mlp(pooled))


class DualEncoder(nn.Module):
    """Both towers and the learned temperature (training only; the bundle holds the towers)."""

    def __init__(self):
        super().__init__()
        self.image = ImageTower()
        self.text = TextTower()
        self.log_scale = nn.Parameter(torch.tensor(2.0))


def build(checkpoint=CHECKPOINT) -> DualEncoder:
    return load_weights(DualEncoder(), checkpoint, NAME)


def build_image(checkpoint=CHECKPOINT) -> ImageTower:
    """The image graph's module with the shipped weights."""
    return build(checkpoint).image.eval()


def build_text(checkpoint=CHECKPOINT) -> TextTower:
    """The text graph's module with the shipped weights."""
    return build(checkpoint).text.eval()
