"""The audio frontend: mono waveform -> log-mel spectrogram.

This is the one implementation used at training time (``edgemm.zoo``), at export/verify time and
by the runtime, so the model always sees the features it was trained on. Windows are not
centred: the features describe exactly the ``window_s`` seconds that end at the last sample.
"""
from __future__ import annotations

from functools import lru_cache
from math import gcd

from typing import Any

import numpy as np

from ..errors import SpecError
AudioPreprocess = Any  # edgemm.modalities' params dataclass, duck-typed: the frontends sit below the modalities


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular HTK-mel filters, shape ``[n_mels, n_fft // 2 + 1]``, float32."""
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = mel_points[:-2, None], mel_points[1:-1, None], mel_points[2:, None]
    up = (freqs[None, :] - lower) / (centre - lower)
    down = (upper - freqs[None, :]) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb.setflags(write=False)
    return fb.astype(np.float32)


@lru_cache(maxsize=16)
def hann_window(win_length: int) -> np.ndarray:
    n = np.arange(win_length)
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)).astype(np.float32)  # periodic Hann
    w.setflags(write=False)
    return w


def resample_factors(orig_rate: int, target_rate: int) -> tuple[int, int]:
    """``(up, down)``: the reduced ratio ``target_rate / orig_rate``."""
    if int(orig_rate) <= 0 or int(target_rate) <= 0:
        raise SpecError(f"sample rates must be positive, got {orig_rate} -> {target_rate}")
    g = gcd(int(orig_rate), int(target_rate))
    return int(target_rate) // g, int(orig_rate) // g


@lru_cache(maxsize=16)
def resample_filter(up: int, down: int) -> np.ndarray:
    """The FIR low-pass ``scipy.signal.resample_poly(x, up, down)`` designs on every call (Kaiser
    window, beta 5, cutoff 1 / max(up, down), ``20 * max(up, down) + 1`` taps), designed once.
    Passed back as ``window=`` it gives bit-identical results (resample_poly scales it by ``up``)."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    h = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    h.setflags(write=False)
    return h


@lru_cache(maxsize=16)
def polyphase_bank(up: int, down: int) -> tuple[np.ndarray, int, int]:
    """``(bank, half_len, taps)`` for streaming resampling: ``bank[p, i] = up * h[p + (taps-1-i) * up]``
    (float32, as resample_poly computes it for float32 audio), so output ``m`` of the stream is
    ``bank[t % up] . x[t // up - taps + 1 : t // up + 1]`` with ``t = m * down + half_len``."""
    h = resample_filter(up, down).astype(np.float32)
    h *= np.float32(up)
    half_len = (len(h) - 1) // 2
    taps = -(-len(h) // up)
    hp = np.zeros(taps * up, np.float32)
    hp[:len(h)] = h
    bank = np.ascontiguousarray(hp.reshape(taps, up).T[:, ::-1])  # [phase, i] = hp[phase + (taps-1-i) * up]
    bank.setflags(write=False)
    return bank, half_len, taps


def resample_segment(x: np.ndarray, x_start: int, up: int, down: int, m0: int, n_out: int) -> np.ndarray:
    """Numpy reference of the streaming resampler: outputs ``m0 .. m0 + n_out - 1`` of the stream
    whose samples ``x_start ..`` are in ``x`` (zero outside it), exactly the samples
    ``resample(whole_stream)`` has there (up to float32 rounding)."""
    bank, half_len, taps = polyphase_bank(up, down)
    t = (np.arange(m0, m0 + n_out, dtype=np.int64) * down + half_len)
    jh = t // up
    idx = (jh - taps + 1 - x_start)[:, None] + np.arange(taps)[None, :]
    valid = (idx >= 0) & (idx < len(x))
    x = np.asarray(x, np.float32)
    xs = np.where(valid, x[np.clip(idx, 0, max(0, len(x) - 1))], np.float32(0.0)) if len(x) else np.zeros(idx.shape, np.float32)
    h = bank[t % up]
    acc = np.zeros(n_out, np.float32)
    for k in range(taps):  # float32, taps in order: the rounding of the C kernel and of scipy's upfirdn
        acc += h[:, k] * xs[:, k]
    return acc


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling along the last axis (anti-aliased): ``scipy.signal.resample_poly``
    with its filter designed once per rate pair (``resample_filter``), same numbers."""
    if orig_rate == target_rate:
        return waveform
    up, down = resample_factors(orig_rate, target_rate)
    from scipy.signal import resample_poly

    x = np.asarray(waveform)
    h = resample_filter(up, down)
    return resample_poly(x, up, down, axis=-1, window=h.astype(x.dtype if x.dtype.kind == "f" else np.float64)).astype(np.float32)


def to_float_waveform(waveform: np.ndarray) -> np.ndarray:
    """int16 PCM or float audio -> float32 in [-1, 1]."""
    waveform = np.asarray(waveform)
    if waveform.dtype == np.int16:
        return waveform.astype(np.float32) / 32768.0
    if np.issubdtype(waveform.dtype, np.floating):
        return waveform.astype(np.float32, copy=False)
    raise SpecError(f"audio must be int16 PCM or float samples, got dtype {waveform.dtype}")


def fit_window(waveform: np.ndarray, n_samples: int) -> np.ndarray:
    """The last ``n_samples`` along the last axis, left-padded with silence when shorter."""
    n = waveform.shape[-1]
    if n >= n_samples:
        return waveform[..., n - n_samples:]
    pad = [(0, 0)] * (waveform.ndim - 1) + [(n_samples - n, 0)]
    return np.pad(waveform, pad)


def log_mel(waveform: np.ndarray, cfg: AudioPreprocess) -> np.ndarray:
    """``[..., n_samples]`` float waveform at ``cfg.sample_rate`` -> ``[..., n_mels, n_frames]`` float32."""
    x = fit_window(np.asarray(waveform, dtype=np.float32), cfg.n_samples)
    return log_mel_frames(x, cfg.n_frames, cfg)


def log_mel_frames(x: np.ndarray, n_frames: int, cfg: AudioPreprocess) -> np.ndarray:
    """``n_frames`` log-mel frames of ``x`` (frame ``f`` starts at sample ``f * cfg.hop``): the
    arithmetic of ``log_mel``, for a streaming frontend that computes only new frames."""
    idx = np.arange(cfg.win_length)[None, :] + cfg.hop * np.arange(n_frames)[:, None]
    frames = x[..., idx] * hann_window(cfg.win_length)  # [..., frames, win]
    spec = np.fft.rfft(frames, n=cfg.n_fft, axis=-1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    mel = power @ mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax).T  # [..., frames, mels]
    return np.log(np.maximum(mel, cfg.log_floor)).swapaxes(-1, -2).astype(np.float32)


def preprocess_audio(waveform: np.ndarray, sample_rate: int, cfg: AudioPreprocess, *, frontend=None) -> np.ndarray:
    """Raw mono waveform(s) ``[n]`` / ``[N, n]`` (any rate, int16 or float) -> ``[N, 1, n_mels, n_frames]``.

    ``frontend`` replaces the numpy ``log_mel`` (same signature), e.g. with the C kernel
    ``edgemm.frontends.native.log_mel`` that the runtime dispatches to; default: this module's reference."""
    w = to_float_waveform(waveform)
    if w.ndim not in (1, 2):
        raise SpecError(f"audio must be a mono 1-D waveform (or a stack of them), got shape {list(w.shape)}; mix channels down first")
    if int(sample_rate) != cfg.sample_rate:
        w = fit_window(w, int(np.ceil(cfg.window_s * sample_rate)) + 64)  # keep only what the window needs
        w = resample(w, int(sample_rate), cfg.sample_rate)
    feats = (frontend or log_mel)(w, cfg)
    return (feats[None] if feats.ndim == 2 else feats)[:, None]
