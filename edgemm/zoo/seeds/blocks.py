"""Encoders shared by the seed models (each maps one modality to a ``dim``-wide embedding) and checkpoint loading."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def conv_bn(cin: int, cout: int, stride=1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ImageEncoder(nn.Module):
    """[B, 3, 32, 32] frame -> [B, dim]: four 3x3 conv blocks (three halve the size), global average pool."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(conv_bn(3, 16), nn.MaxPool2d(2), conv_bn(16, 32), nn.MaxPool2d(2),
                                  conv_bn(32, 64), nn.MaxPool2d(2), conv_bn(64, dim))

    def forward(self, x):
        return self.body(x).mean(dim=(2, 3))


class AudioEncoder(nn.Module):
    """[B, 1, 32, 49] log-mel -> [B, dim]: input norm, four strided conv blocks, global average pool."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.norm = nn.BatchNorm2d(1)
        self.body = nn.Sequential(conv_bn(1, 16, 2), conv_bn(16, 32, 2), conv_bn(32, 64, 2), conv_bn(64, dim))

    def forward(self, x):
        return self.body(self.norm(x)).mean(dim=(2, 3))


class CaptionEncoder(nn.Module):
    """[B, L] int64 token ids (right-padded with 0) -> [B, dim]: Embedding + LSTM, the last hidden state."""

    def __init__(self, vocab: int, dim: int = 64, embed: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, dim, batch_first=True)

    def forward(self, tokens):
        _, (h, _) = self.lstm(self.embed(tokens))
        return h[-1]


def load_weights(model: nn.Module, checkpoint, name: str) -> nn.Module:
    """``model`` with the state dict saved at ``checkpoint`` (``{"model": state}``) in eval mode; ``None``: untrained.
    Every problem is one EdgemmError line naming the file and the fix."""
    if checkpoint is not None:
        from ...errors import EdgemmError
        from ...torchload import load_checkpoint

        path = Path(checkpoint)
        fix = f"train it with `python scripts/train_seeds.py --model {name}` or pass checkpoint=None"
        if not path.is_file():
            raise EdgemmError(f"{name} checkpoint {path} not found; {fix}")
        state = load_checkpoint(path)  # weights-only
        if not isinstance(state, dict):
            raise EdgemmError(f"{name} checkpoint {path} holds a {type(state).__name__}, not a state dict; {fix}")
        try:
            model.load_state_dict(state["model"] if "model" in state else state)
        except (RuntimeError, KeyError, TypeError) as exc:
            raise EdgemmError(f"{name} checkpoint {path} does not fit the {name} model ({type(exc).__name__}); {fix}") from exc
    return model.eval()


def save_weights(model: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
