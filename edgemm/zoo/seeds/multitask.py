"""``seed_multitask``: a spoken digit -> its class AND the length of the speech (two tasks, one encoder).

Input: ``audio`` [batch, 1, 32, 49], the log-mel of the 1.0 s window at 8 kHz (``data.AUDIO_PRE``). Outputs:
``digit`` (10 logits, classification) and ``duration`` [batch, 1] (regression: seconds of speech in the
window, the silence-trimmed FSDD recording; see ``data.speech_duration``). The recipe declares
``task = "regression"`` for ``duration``, so the pipeline measures it by MAE / RMSE and budgets its INT8 MAE.
"""
from __future__ import annotations

import torch
from torch import nn

from ..avmnist import DIGITS
from .blocks import CHECKPOINTS, AudioEncoder, load_weights

NAME = "seed_multitask"
CHECKPOINT = CHECKPOINTS / f"{NAME}.pt"
INPUTS = ("audio",)
# The duration head predicts (seconds - MEAN) / SCALE; the graph maps it back to seconds.
DURATION_MEAN, DURATION_SCALE = 0.45, 0.15


class MultitaskNet(nn.Module):
    def __init__(self, dim: int = 64):
        super().__init__()
        self.audio = AudioEncoder(dim)
        self.shared = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(inplace=True))
        self.digit = nn.Linear(64, len(DIGITS))
        self.duration = nn.Linear(64, 1)

    def forward(self, audio: torch.Tensor):
        z = self.shared(self.audio(audio))
        return self.digit(z), self.duration(z) * DURATION_SCALE + DURATION_MEAN


def build(checkpoint=CHECKPOINT) -> MultitaskNet:
    return load_weights(MultitaskNet(), checkpoint, NAME)
