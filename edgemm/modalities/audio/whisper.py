"""Whisper's log-mel features in numpy, as ``transformers.WhisperFeatureExtractor`` computes them (numpy path):
periodic Hann window, centred frames (reflect padding), power spectrum, Slaney mel filters and scale,
log10 floored at 1e-10, the last frame dropped, clamped to max - 8, ``(x + 4) / 4``."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

MIN_LOG_HZ, MIN_LOG_MEL, LOGSTEP = 1000.0, 15.0, 27.0 / np.log(6.4)


def hz_to_mel(freq):
    freq = np.asarray(freq, np.float64)
    mels = 3.0 * freq / 200.0
    return np.where(freq >= MIN_LOG_HZ, MIN_LOG_MEL + np.log(np.maximum(freq, 1e-12) / MIN_LOG_HZ) * LOGSTEP, mels)


def mel_to_hz(mels):
    mels = np.asarray(mels, np.float64)
    freq = 200.0 * mels / 3.0
    return np.where(mels >= MIN_LOG_MEL, MIN_LOG_HZ * np.exp((mels - MIN_LOG_MEL) / LOGSTEP), freq)


@lru_cache(maxsize=8)
def slaney_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """``[n_fft // 2 + 1, n_mels]`` Slaney-normalised triangular filters on the Slaney mel scale."""
    filter_freqs = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fft_freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    fb *= (2.0 / (filter_freqs[2:n_mels + 2] - filter_freqs[:n_mels]))[None, :]
    fb.setflags(write=False)
    return fb


def whisper_log_mel(waveform: np.ndarray, sample_rate: int, n_fft: int, hop: int, n_mels: int, n_samples: int,
                    fmin: float = 0.0, fmax: float = 8000.0) -> np.ndarray:
    """``[..., n]`` float waveform(s) at ``sample_rate`` -> ``[..., n_mels, n_samples // hop]`` float32 (the first
    ``n_samples``, right-padded with zeros)."""
    x = np.asarray(waveform, np.float64)
    n = x.shape[-1]
    if n >= n_samples:
        x = x[..., :n_samples]
    else:
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n_samples - n)])
    window = np.hanning(n_fft + 1)[:-1]
    fb = slaney_filters(sample_rate, n_fft, n_mels, float(fmin), float(fmax))
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)], mode="reflect")
    frames = 1 + (padded.shape[-1] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(padded[..., idx] * window, n=n_fft, axis=-1)) ** 2  # [..., frames, bins]
    mel = np.maximum(spec @ fb, 1e-10)  # [..., frames, mels]
    log_spec = np.log10(mel).swapaxes(-1, -2)[..., :-1]
    peak = log_spec.max(axis=(-1, -2), keepdims=True)
    log_spec = np.maximum(log_spec, peak - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)
