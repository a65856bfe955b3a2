"""A tiny two-input model with cross-modal attention for the pruning tests (module level: picklable)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgemm.data.datasets import Samples
from edgemm.iospec import IOSpec, TensorSpec

IMAGE_SHAPE = (3, 8, 8)
AUDIO_SHAPE = (1, 8, 10)


def cbr(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class TinyAttnAV(nn.Module):
    """image [B,3,8,8] + audio [B,1,8,10] -> conv branches -> tokens -> cross-attention -> MLP -> (cls [B,4], spk [B,3])."""

    def __init__(self, dim: int = 16, heads: int = 4, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.img = nn.Sequential(cbr(3, 16), cbr(16, 24, 2))  # -> [B, 24, 4, 4]
        self.aud = nn.Sequential(cbr(1, 16), cbr(16, 24, 2))  # -> [B, 24, 4, 5]
        self.img_proj = nn.Linear(24, dim)
        self.aud_proj = nn.Linear(24, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 32), nn.ReLU())
        self.cls = nn.Linear(32, 4)
        self.spk = nn.Linear(32, 3)
        self.eval()

    def forward(self, image, audio):
        it = self.img_proj(self.img(image).flatten(2).transpose(1, 2))
        at = self.aud_proj(self.aud(audio).flatten(2).transpose(1, 2))
        ctx, _ = self.attn(it, at, at, need_weights=False)
        z = self.mlp((it + ctx).mean(1))
        return self.cls(z), self.spk(z)


def tiny_spec() -> IOSpec:
    return IOSpec(
        inputs=(TensorSpec("image", "float32", ("batch", *IMAGE_SHAPE), "tensor"),
                TensorSpec("audio", "float32", ("batch", *AUDIO_SHAPE), "tensor")),
        outputs=(TensorSpec("cls", "float32", ("batch", 4), labels=tuple("abcd")),
                 TensorSpec("spk", "float32", ("batch", 3), labels=("x", "y", "z"))),
    )


def tiny_samples(model: nn.Module, n: int, seed: int) -> Samples:
    """Random inputs labelled by the model itself (a task the unpruned model solves perfectly)."""
    rng = np.random.default_rng(seed)
    feeds = {"image": rng.standard_normal((n, *IMAGE_SHAPE)).astype(np.float32),
             "audio": rng.standard_normal((n, *AUDIO_SHAPE)).astype(np.float32)}
    with torch.no_grad():
        cls, spk = model(torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["audio"]))
    return Samples(feeds, {"cls": cls.argmax(-1).numpy(), "spk": spk.argmax(-1).numpy()}, f"random-{seed}")


def run(model: nn.Module, feeds) -> list[np.ndarray]:
    with torch.no_grad():
        return [o.numpy() for o in model(torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["audio"]))]


class Untraceable(TinyAttnAV):
    """The image branch leaves autograd (detach): torch-pruning cannot follow its channels (torch.export can)."""

    def forward(self, image, audio):
        x = self.img(image)
        x = x.detach().flatten(2).transpose(1, 2)  # leaves autograd; torch.export still traces it
        it = self.img_proj(x)
        at = self.aud_proj(self.aud(audio).flatten(2).transpose(1, 2))
        ctx, _ = self.attn(it, at, at, need_weights=False)
        z = self.mlp((it + ctx).mean(1))
        return self.cls(z), self.spk(z)


def untraceable() -> Untraceable:
    """Recipe factory (``prune_tiny:untraceable``) for the CLI refusal test."""
    return Untraceable()


RECIPE = """[model]
name = "{name}"
factory = "prune_tiny:{factory}"

[[inputs]]
name = "image"
modality = "tensor"
dtype = "float32"
shape = ["batch", 3, 8, 8]

[[inputs]]
name = "audio"
modality = "tensor"
dtype = "float32"
shape = ["batch", 1, 8, 10]

[[outputs]]
name = "cls"
dtype = "float32"
shape = ["batch", 4]

[[outputs]]
name = "spk"
dtype = "float32"
shape = ["batch", 3]

[export]
targets = ["onnxruntime"]
"""


def generated_training(path=None, n: int = 64, seed: int = 0) -> dict:
    """A ``[data.training]`` generator (``prune_tiny:generated_training``): ``n`` samples of :func:`tiny_samples`
    as arrays in the sample-file format (inputs + labels), as a recipe's own rendering code returns them."""
    s = tiny_samples(TinyAttnAV(), n, seed)
    return {**s.feeds, **s.labels}
