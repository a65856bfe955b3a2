"""Valid model inputs a family can make for any batch size: images, token ids with prefix masks, waveforms,
log-mel spectrograms (the generators of edgemm.modalities, named for the families). The export traces on them and parity compares on them (random {0, 1} integers are not
token ids: a text tower's pooling and masks then compute nonsense that no runtime needs to agree on)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..modalities.audio import waveforms as audio_waveforms
from ..modalities.image import normalised_images
from ..modalities.text import token_ids  # noqa: F401 - the families' name for the text modality's generator


def images(batch: int, size: tuple[int, int], mean: Sequence[float], std: Sequence[float], seed: int,
           channels: int = 3) -> np.ndarray:
    """Normalised NCHW images: smooth colour gradients with noise, like frames after ``(x / 255 - mean) / std``."""
    return normalised_images(batch, size, mean, std, seed, channels)


def waveforms(batch: int, samples: int, sample_rate: int, seed: int, normalize: bool) -> np.ndarray:
    """Mono float32 ``[batch, samples]`` of speech-like energy (the audio modality's generator)."""
    return audio_waveforms(batch, samples, sample_rate, seed, normalize)


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
