"""``seed_text_image``: a caption and a frame -> the digit (concatenation fusion).

Inputs: ``image`` [batch, 3, 32, 32] (an RGB frame resized and normalised, ``data.IMAGE_PRE``) and ``caption``
[batch, 8] int64 token ids of a caption that carries partial information ("an odd digit", "a digit above
four", see ``captions``). Output: ``digit`` (10 logits). Branches: a CNN over the frame, Embedding + LSTM
over the caption; their embeddings are concatenated and classified by an MLP.
"""
from __future__ import annotations

import torch
from torch import nn

from ..avmnist import DIGITS
from .blocks import CHECKPOINTS, CaptionEncoder, ImageEncoder, load_weights
from .captions import caption_words

NAME = "seed_text_image"
CHECKPOINT = CHECKPOINTS / f"{NAME}.pt"
INPUTS = ("image", "caption")

class TextImageNet(nn.Module):
    def __init__(self, dim: int = 64):
        super().__init__()
        self.image = ImageEncoder(dim)
        self.caption = CaptionEncoder(len(caption_words()) + 2, dim)
        self.head = nn.Sequential(nn.Linear(2 * dim, 64), nn.ReLU(inplace=True), nn.Dropout(0.1), nn.Linear(64, len(DIGITS)))

    def forward(self, image: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.image(image), self.caption(caption)], dim=1))

def build(checkpoint=CHECKPOINT) -> TextImageNet:
    """The model in eval mode with the shipped weights (``checkpoint=None``: untrained)."""
    return load_weights(TextImageNet(), checkpoint, NAME)
