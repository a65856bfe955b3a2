"""A model edgemm was not built around (issue 10): the kind a user brings as a ``.pt2``.

``UserAVT``: an image through a small CNN, a raw waveform through a learned strided-conv frontend
(no log-mel), int64 tokens through an embedding and a GRU, the text attending over image + audio
features (multi-head attention with a Softmax), a sigmoid-gated fusion of the three, one head
(``output_0``, no labels). ``save_user_model`` writes it with ``torch.export`` (dynamic batch) and
calibration / held-out ``.npz`` files keyed by the ``forward()`` parameter names, the way a user
would hand them to ``edgemm export model.pt2 --int8 --calib DIR``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

IMAGE = (3, 32, 32)
SAMPLES = 4000  # 0.25 s of 16 kHz audio
TOKENS = 12
VOCAB = 64
CLASSES = 10


class UserAVT(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.img = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
        self.wav = nn.Sequential(nn.Conv1d(1, 16, 64, stride=16), nn.ReLU(), nn.Conv1d(16, 32, 5, stride=4), nn.ReLU())
        self.emb = nn.Embedding(VOCAB, 32)
        self.gru = nn.GRU(32, 32, batch_first=True)
        self.attn = nn.MultiheadAttention(32, 4, batch_first=True)
        self.norm = nn.LayerNorm(32)
        self.gate = nn.Linear(96, 32)
        self.head = nn.Linear(32, CLASSES)
        self.eval()

    def forward(self, image: torch.Tensor, waveform: torch.Tensor, tokens: torch.Tensor):
        i = self.img(image).flatten(2).transpose(1, 2)  # [B, 64, 32]
        a = self.wav(waveform).transpose(1, 2)  # [B, 61, 32]
        t, _ = self.gru(self.emb(tokens))  # [B, 12, 32]
        kv = torch.cat([i, a], 1)
        q, _ = self.attn(t, kv, kv, need_weights=False)
        q = self.norm(q + t).mean(1)
        ip, ap = i.mean(1), a.mean(1)
        g = torch.sigmoid(self.gate(torch.cat([q, ip, ap], 1)))
        return self.head(g * ip + (1 - g) * ap + q)


def user_feeds(n: int, seed: int) -> dict[str, np.ndarray]:
    """Inputs with the structure of real ones: smooth images, tones + noise, token ids over the vocabulary."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, IMAGE[1]), np.linspace(-1, 1, IMAGE[2]), indexing="ij")
    fx, fy, ph = (rng.uniform(0.5, 3, (n, IMAGE[0], 1, 1)) for _ in range(3))
    image = np.sin(np.pi * (fx * xx + fy * yy) + ph * 3) + 0.1 * rng.standard_normal((n, *IMAGE))
    t = np.arange(SAMPLES) / 16000.0
    f0 = rng.uniform(100, 1500, (n, 1, 1))
    amp = rng.uniform(0.1, 0.8, (n, 1, 1))
    wave = amp * np.sin(2 * np.pi * f0 * t) + 0.3 * amp * np.sin(2 * np.pi * 2.7 * f0 * t) + 0.02 * rng.standard_normal((n, 1, SAMPLES))
    tokens = rng.integers(0, VOCAB, (n, TOKENS))
    return {"image": image.astype(np.float32), "waveform": wave.astype(np.float32), "tokens": tokens.astype(np.int64)}


def export_program(model: nn.Module | None = None):
    model = model or UserAVT()
    torch.backends.mha.set_fastpath_enabled(False)  # else the attention is one fused op in the program
    ex = user_feeds(2, 99)
    batch = torch.export.Dim("batch", min=1, max=64)
    with torch.no_grad():
        return torch.export.export(model, tuple(torch.from_numpy(ex[k]) for k in ("image", "waveform", "tokens")),
                                   dynamic_shapes=({0: batch}, {0: batch}, {0: batch}))


def save_user_model(root: Path, calib_samples: int = 120, heldout: int = 100) -> tuple[Path, Path, Path]:
    """``root/model.pt2``, ``root/calib/`` (one .npz per 20 samples), ``root/heldout.npz``; returns the three paths."""
    root.mkdir(parents=True, exist_ok=True)
    pt2 = root / "model.pt2"
    torch.export.save(export_program(), str(pt2))
    calib = root / "calib"
    calib.mkdir(exist_ok=True)
    feeds = user_feeds(calib_samples, 1)
    for s in range(0, calib_samples, 20):
        np.savez(calib / f"part{s // 20:02d}.npz", **{k: v[s:s + 20] for k, v in feeds.items()})
    held = root / "heldout.npz"
    np.savez(held, **user_feeds(heldout, 2))
    return pt2, calib, held
