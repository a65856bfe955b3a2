"""``avnet``: the reference audio-visual model (AV-MNIST digits + FSDD speakers).

Inputs (fixed, DESIGN.md): ``image`` [batch, 3, 64, 64] (an RGB camera frame resized and
normalised) and ``audio`` [batch, 1, 64, 98] (log-mel of the 1.0 s, 16 kHz window that ends at
the frame, from ``edgemm.frontends.audio``). Heads: ``digit`` (10 logits, labels "0".."9") and
``speaker`` (6 logits, FSDD speaker names).

Image branch: depthwise-separable CNN -> 8x8 grid of tokens. Audio branch: CNN over the
log-mel -> time x frequency tokens. Fusion: cross-modal attention in both directions (image
tokens attend to audio tokens and vice versa) + concatenation of pooled features -> heads.
Trained with modality dropout (a blank frame or silence), so a missing modality degrades
gracefully instead of breaking the prediction.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..iospec import AudioPreprocess, ImagePreprocess, IOSpec, TensorSpec
from .avmnist import DIGITS, SPEAKERS

CHECKPOINT = Path(__file__).parent / "checkpoints" / "avnet.pt"
IMAGE_PRE = ImagePreprocess(size=(64, 64), channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
AUDIO_PRE = AudioPreprocess()


def iospec() -> IOSpec:
    return IOSpec(
        inputs=(
            TensorSpec("image", "float32", ("batch", 3, *IMAGE_PRE.size), "image", IMAGE_PRE),
            TensorSpec("audio", "float32", ("batch", 1, AUDIO_PRE.n_mels, AUDIO_PRE.n_frames), "audio", AUDIO_PRE),
        ),
        outputs=(
            TensorSpec("digit", "float32", ("batch", len(DIGITS)), labels=DIGITS),
            TensorSpec("speaker", "float32", ("batch", len(SPEAKERS)), labels=SPEAKERS),
        ),
    )


def conv_bn(cin: int, cout: int, stride: int = 1, groups: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(conv_bn(cin, cin, stride, groups=cin), conv_bn(cin, cout, k=1))


class ImageBranch(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(3, 24, stride=2),  # 32x32
            DepthwiseSeparable(24, 48, 2),  # 16x16
            DepthwiseSeparable(48, 64, 1),
            DepthwiseSeparable(64, dim, 2),  # 8x8
            DepthwiseSeparable(dim, dim, 1),
        )

    def forward(self, x):
        return self.body(x).flatten(2).transpose(1, 2)  # [B, 64 tokens, dim]


class AudioBranch(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(1)
        self.body = nn.Sequential(
            conv_bn(1, 32, stride=2),  # 32 x 49
            conv_bn(32, 48, stride=2),  # 16 x 25
            conv_bn(48, 64, stride=2),  # 8 x 13
            conv_bn(64, dim, stride=(2, 1)),  # 4 x 13
        )

    def forward(self, x):
        return self.body(self.norm(x)).flatten(2).transpose(1, 2)  # [B, 52 tokens, dim]


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, query, context):
        out, _ = self.attn(query, context, context, need_weights=False)
        return self.norm(query + out)


class AVFusion(nn.Module):
    """Two token branches, positional embeddings, cross-attention both ways, mean-pooled concatenation and two
    heads: avnet's fusion, shared by avnet_m (its branches and widths differ)."""

    def __init__(self, image: nn.Module, audio: nn.Module, image_tokens: int, audio_tokens: int, dim: int, heads: int,
                 width: int, n_digits: int, n_speakers: int):
        super().__init__()
        self.image = image
        self.audio = audio
        self.img_pos = nn.Parameter(torch.zeros(1, image_tokens, dim))
        self.aud_pos = nn.Parameter(torch.zeros(1, audio_tokens, dim))
        self.img_from_aud = CrossAttention(dim, heads)
        self.aud_from_img = CrossAttention(dim, heads)
        self.fuse = nn.Sequential(nn.Linear(4 * dim, width), nn.ReLU(inplace=True), nn.Dropout(0.2))
        self.digit = nn.Linear(width, n_digits)
        self.speaker = nn.Linear(width, n_speakers)

    def forward(self, image: torch.Tensor, audio: torch.Tensor):
        it = self.image(image) + self.img_pos
        at = self.audio(audio) + self.aud_pos
        ic = self.img_from_aud(it, at)
        ac = self.aud_from_img(at, it)
        z = torch.cat([it.mean(1), at.mean(1), ic.mean(1), ac.mean(1)], dim=1)
        z = self.fuse(z)
        return self.digit(z), self.speaker(z)


class AVNet(AVFusion):
    def __init__(self, dim: int = 96, heads: int = 4, n_digits: int = 10, n_speakers: int = 6):
        super().__init__(ImageBranch(dim), AudioBranch(dim), 64, 52, dim, heads, 128, n_digits, n_speakers)


def build(checkpoint: str | Path | None = CHECKPOINT) -> AVNet:
    """The reference model in eval mode, with the shipped weights (``checkpoint=None``: untrained)."""
    model = AVNet()
    if checkpoint is not None:
        from ..errors import EdgemmError

        path = Path(checkpoint)
        if not path.is_file():
            raise EdgemmError(f"avnet checkpoint {path} not found; train it with `python scripts/train_avnet.py` or pass checkpoint=None")
        from ..torchload import load_checkpoint

        state = load_checkpoint(path)  # weights-only; one line naming --trust-code if it would need code
        if not isinstance(state, dict):
            raise EdgemmError(f"avnet checkpoint {path} holds a {type(state).__name__}, not a state dict; re-save it with torch.save(model.state_dict())")
        try:
            model.load_state_dict(state["model"] if "model" in state else state)
        except (RuntimeError, KeyError, TypeError) as exc:
            raise EdgemmError(f"avnet checkpoint {path} does not fit the avnet model ({type(exc).__name__}); "
                              "train it with `python scripts/train_avnet.py`") from exc
    return model.eval()
