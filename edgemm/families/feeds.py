"""Valid model inputs a family can make for any batch size: images, token ids with prefix masks, waveforms,
log-mel spectrograms. The export traces on them and parity compares on them (random {0, 1} integers are not
token ids: a text tower's pooling and masks then compute nonsense that no runtime needs to agree on)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def images(batch: int, size: tuple[int, int], mean: Sequence[float], std: Sequence[float], seed: int,
           channels: int = 3) -> np.ndarray:
    """Normalised NCHW images: smooth colour gradients with noise, like frames after ``(x / 255 - mean) / std``."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.meshgrid(np.linspace(0, 1, h, dtype=np.float32), np.linspace(0, 1, w, dtype=np.float32), indexing="ij")
    out = np.empty((batch, channels, h, w), np.float32)
    for b in range(batch):
        a = rng.uniform(-1, 1, (channels, 3)).astype(np.float32)
        base = 0.5 + 0.4 * np.tanh(a[:, :1, None] * xx + a[:, 1:2, None] * yy + a[:, 2:3, None])
        pixels = np.clip(base + rng.normal(0, 0.08, (channels, h, w)), 0, 1)
        pixels = np.round(pixels * 255) / 255  # 8-bit frames
        m = np.asarray(mean, np.float32).reshape(-1, 1, 1)[:channels]
        s = np.asarray(std, np.float32).reshape(-1, 1, 1)[:channels]
        out[b] = (pixels - m) / s
    return out


def token_ids(batch: int, length: int, vocab_size: int, seed: int, *, bos: int | None = None, eos: int | None = None,
              pad: int | None = None, min_tokens: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int64 ``[batch, length]``: each row ``[bos] words... [eos]`` then padding;
    the mask is a prefix of ones over the real tokens. Words avoid the special ids."""
    rng = np.random.default_rng(seed)
    special = {t for t in (bos, eos, pad) if t is not None}
    ordinary = np.array([t for t in range(vocab_size) if t not in special] or [0], np.int64)
    ids = np.full((batch, length), pad if pad is not None else (eos if eos is not None else 0), np.int64)
    mask = np.zeros((batch, length), np.int64)
    fixed = (bos is not None) + (eos is not None)
    for b in range(batch):
        words = int(rng.integers(max(1, min_tokens), max(2, length - fixed + 1)))
        words = min(words, length - fixed)
        row = ([bos] if bos is not None else []) + list(rng.choice(ordinary, words)) + ([eos] if eos is not None else [])
        ids[b, :len(row)] = row
        mask[b, :len(row)] = 1
    return ids, mask


def waveforms(batch: int, samples: int, sample_rate: int, seed: int, normalize: bool) -> np.ndarray:
    """Mono float32 ``[batch, samples]``: a few tones with a pitch glide, an envelope and some noise (speech-like
    energy), zero-mean unit-variance per row when the model's feature extractor normalises."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples, dtype=np.float64) / sample_rate
    out = np.empty((batch, samples), np.float32)
    for b in range(batch):
        x = np.zeros(samples)
        for _ in range(3):
            f0 = rng.uniform(90, 1200)
            glide = rng.uniform(-0.3, 0.3)
            x += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * f0 * t * (1 + glide * t) + rng.uniform(0, 2 * np.pi))
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 5) * t + rng.uniform(0, 2 * np.pi)) ** 2
        x = x * env + rng.normal(0, 0.01, samples)
        if normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        out[b] = x
    return out


def whisper_log_mel(batch: int, n_mels: int, frames: int, seed: int, sample_rate: int = 16000, n_fft: int = 400,
                    hop: int = 160) -> np.ndarray:
    """``[batch, n_mels, frames]`` log-mel features computed the way Whisper's feature extractor does (power STFT,
    mel filters, log10, floor at max - 8, ``(x + 4) / 4``) from :func:`waveforms`."""
    samples = hop * frames
    waves = waveforms(batch, samples, sample_rate, seed, normalize=False)
    window = np.hanning(n_fft + 1)[:-1]
    fb = _mel_filters(sample_rate, n_fft, n_mels)
    out = np.empty((batch, n_mels, frames), np.float32)
    for b in range(batch):
        x = np.pad(waves[b].astype(np.float64), n_fft // 2, mode="reflect")
        idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
        power = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2  # [frames, n_fft // 2 + 1]
        mel = np.log10(np.maximum(power @ fb.T, 1e-10)).T
        mel = np.maximum(mel, mel.max() - 8.0)
        out[b] = (mel + 4.0) / 4.0
    return out


def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-style triangular mel filters ``[n_mels, n_fft // 2 + 1]``."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    fb = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[i] = np.maximum(0, np.minimum(up, down)) * (2.0 / max(hi - lo, 1e-9))
    return fb
