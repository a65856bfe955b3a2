"""``avnet_m``: the performance reference, avnet's task at a realistic size (~0.5 GFLOP at batch 1).

Same task, heads and fusion as :mod:`edgemm.zoo.avnet` (AV-MNIST digits + FSDD speakers; cross-modal
attention both ways, pooled features concatenated -> ``digit`` and ``speaker``), with branches of the
size a deployed model has:

- ``image`` [batch, 3, 160, 160]: a MobileNetV2-style branch (depthwise-separable inverted residuals,
  BatchNorm, ReLU6; stride 32 -> a 5x5 grid of tokens). ReLU6 rather than hard-swish/SiLU: it folds into
  the int8 convolutions (a clip of their output), where a swish needs its own float or lookup-table op.
- ``audio`` [batch, 1, 64, 98]: the same log-mel as avnet through a wider and deeper plain CNN
  (3x3 convolutions, BN, ReLU6 -> 4 x 13 tokens).

avnet stays the fast test model; this one is where INT8, pruning and per-call cost are measured
(benchmarks/bench_avnet_m.py). Trained by ``scripts/train_avnet_m.py``; weights ship as fp16
(``checkpoints/avnet_m.pt``) and are loaded as fp32.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..iospec import AudioPreprocess, ImagePreprocess, IOSpec, TensorSpec
from .avmnist import DIGITS, SPEAKERS
from .avnet import AVFusion

CHECKPOINT = Path(__file__).parent / "checkpoints" / "avnet_m.pt"
IMAGE_SIZE = 160
IMAGE_PRE = ImagePreprocess(size=(IMAGE_SIZE, IMAGE_SIZE), channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
AUDIO_PRE = AudioPreprocess()
IMAGE_TOKENS = (IMAGE_SIZE // 32) ** 2  # 5 x 5
AUDIO_TOKENS = 4 * 13

# Image stages (block, expansion t, channels c, repeats n, first stride s) after a stride-2 stem (80x80). The 40x40
# stage uses fused inverted residuals (EfficientNetV2: one 3x3 convolution instead of 1x1 expand + depthwise): at high
# resolution a depthwise convolution is memory-bound in training and in int8, a dense one is neither. Later stages
# are MobileNetV2 inverted residuals (1x1 expand, 3x3 depthwise, 1x1 linear projection).
IMAGE_STAGES = (("fused", 4, 32, 1, 2), ("fused", 2, 32, 1, 1), ("mb", 4, 64, 3, 2), ("mb", 4, 128, 3, 2), ("mb", 6, 160, 3, 2))


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


def conv_bn(cin: int, cout: int, stride=1, groups: int = 1, k: int = 3, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, with a skip when shapes allow (MobileNetV2)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, k=1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, stride, groups=hidden), conv_bn(hidden, cout, k=1, act=False)]
        self.block = nn.Sequential(*layers)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.skip else self.block(x)


class FusedInvertedResidual(nn.Module):
    """3x3 expand (dense) -> 1x1 linear projection, with a skip when shapes allow (EfficientNetV2's fused MBConv)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        self.block = nn.Sequential(conv_bn(cin, cin * expand, stride), conv_bn(cin * expand, cout, k=1, act=False))
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.skip else self.block(x)


BLOCKS = {"fused": FusedInvertedResidual, "mb": InvertedResidual}


class ImageBranch(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, 24, stride=2)]  # 80x80
        cin = 24
        for kind, t, c, n, s in IMAGE_STAGES:  # 40x40, 20x20, 10x10, 5x5
            for i in range(n):
                layers.append(BLOCKS[kind](cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, dim, k=1))  # 5x5 x dim
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x).flatten(2).transpose(1, 2)  # [B, 25 tokens, dim]


class AudioBranch(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(1)
        self.body = nn.Sequential(
            conv_bn(1, 32, stride=2),  # 32 x 49
            conv_bn(32, 96, stride=2),  # 16 x 25
            conv_bn(96, 96),
            conv_bn(96, 128, stride=2),  # 8 x 13
            conv_bn(128, 128),
            conv_bn(128, dim, stride=(2, 1)),  # 4 x 13
        )

    def forward(self, x):
        return self.body(self.norm(x)).flatten(2).transpose(1, 2)  # [B, 52 tokens, dim]


class AVNetM(AVFusion):
    def __init__(self, dim: int = 128, heads: int = 4, n_digits: int = 10, n_speakers: int = 6):
        super().__init__(ImageBranch(dim), AudioBranch(dim), IMAGE_TOKENS, AUDIO_TOKENS, dim, heads, 256, n_digits, n_speakers)


def build(checkpoint: str | Path | None = CHECKPOINT) -> AVNetM:
    """The realistic-size reference model in eval mode, with the shipped weights (``checkpoint=None``: untrained).
    The checkpoint stores fp16 weights (half the size, no measurable change in top-1); they load as fp32."""
    model = AVNetM()
    if checkpoint is not None:
        from ..errors import EdgemmError

        path = Path(checkpoint)
        if not path.is_file():
            raise EdgemmError(f"avnet_m checkpoint {path} not found; train it with `python scripts/train_avnet_m.py` or pass checkpoint=None")
        from ..torchload import load_checkpoint

        state = load_checkpoint(path)  # weights-only; one line naming --trust-code if it would need code
        if not isinstance(state, dict):
            raise EdgemmError(f"avnet_m checkpoint {path} holds a {type(state).__name__}, not a state dict; "
                              "re-save it with torch.save(model.state_dict())")
        state = state["model"] if "model" in state else state
        try:
            state = {k: v.float() if torch.is_floating_point(v) else v for k, v in state.items()}
            model.load_state_dict(state)
        except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
            raise EdgemmError(f"avnet_m checkpoint {path} does not fit the avnet_m model ({type(exc).__name__}); "
                              "train it with `python scripts/train_avnet_m.py`") from exc
    return model.eval()
