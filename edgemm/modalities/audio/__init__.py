"""The audio modality: a mono waveform (int16 PCM or float, any sample rate the caller names) -> features.

Features: ``log_mel`` (the C kernel and the streaming frontend of ``edgemm.frontends``), ``waveform``
(Wav2Vec2-style raw input) or ``whisper_log_mel``. The waveform's sample rate is part of the data: a call
without it is an error unless the spec names ``input_rate``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import SpecError
from ...frontends.audio import fit_window, preprocess_audio, resample, to_float_waveform
from ..base import Context, Modality, StreamAdapter, unknown_options
from .params import AudioPreprocess
from .whisper import whisper_log_mel


def waveforms(batch: int, samples: int, sample_rate: int, seed: int, normalize: bool = False) -> np.ndarray:
    """Mono float32 ``[batch, samples]``: a few tones with a pitch glide, an envelope and some noise (speech-like
    energy), zero-mean unit-variance per row when ``normalize``."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples, dtype=np.float64) / sample_rate
    out = np.empty((batch, samples), np.float32)
    for b in range(batch):
        x = np.zeros(samples)
        for _ in range(3):
            f0 = rng.uniform(90, min(1200, sample_rate / 2.5))
            glide = rng.uniform(-0.3, 0.3)
            x += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * f0 * t * (1 + glide * t) + rng.uniform(0, 2 * np.pi))
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 5) * t + rng.uniform(0, 2 * np.pi)) ** 2
        x = x * env + rng.normal(0, 0.01, samples)
        if normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        out[b] = x
    return out


def resolve_rate(t, cfg: AudioPreprocess, rate, ctx: Context) -> int:
    """The raw waveform's rate: the call's, else the spec's ``input_rate``, else one SpecError line."""
    if rate is None:
        rate = cfg.input_rate
    if rate is None:
        raise SpecError(f"{ctx.prefix}audio input {t.name!r} needs the sample rate of the waveform: pass "
                        f"{t.name}=(waveform, RATE) or sample_rate=RATE (the model runs at {cfg.sample_rate} Hz; "
                        "a recipe may name input_rate in the input's preprocessing)")
    if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or int(rate) < 1:
        raise SpecError(f"{ctx.prefix}audio sample rate must be a positive integer (Hz), not {rate!r}")
    return int(rate)


def features(w: np.ndarray, rate: int, cfg: AudioPreprocess, *, whole: bool = False, log_mel=None) -> np.ndarray:
    """float32 waveform(s) ``[n]`` / ``[N, n]`` at ``rate`` -> ``[N, ...]`` features (before fitting the input's rank).
    ``whole``: a waveform input with a dynamic length keeps the whole clip instead of the last ``window_s``."""
    if cfg.features == "log_mel":
        return preprocess_audio(w, rate, cfg, frontend=log_mel)
    x = w if w.ndim == 2 else w[None]
    if not whole and cfg.features == "waveform" and rate != cfg.sample_rate:
        x = fit_window(x, int(np.ceil(cfg.window_s * rate)) + 64)  # only what the window needs
    x = resample(x, rate, cfg.sample_rate) if rate != cfg.sample_rate else x.astype(np.float32, copy=False)
    if cfg.features == "waveform":
        if not whole:
            x = fit_window(x, cfg.n_samples)
        if cfg.normalize:
            x64 = x.astype(np.float64)
            x = ((x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-7)).astype(np.float32)
        return x
    return whisper_log_mel(x, cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels, cfg.n_samples, cfg.fmin, cfg.fmax)


def fit_rank(x: np.ndarray, t) -> np.ndarray:
    """Features ``[N, ...]`` shaped for input ``t`` (a channel axis added or dropped)."""
    want = len(t.shape)
    while x.ndim > want and x.shape[1] == 1:
        x = x[:, 0]
    while x.ndim < want:
        x = x[:, None]
    return x


class AudioModality(Modality):
    name = "audio"
    description = "mono waveforms at a stated sample rate: log-mel (C kernel, streaming), raw waveform, Whisper log-mel"
    params = AudioPreprocess
    options = ("sample_rate",)

    @staticmethod
    def whole_clip(t) -> bool:
        return t.preprocessing.features == "waveform" and bool(t.shape) and isinstance(t.shape[-1], str)

    def preprocess(self, t, raw, ctx: Context) -> dict[str, np.ndarray]:
        unknown_options(self, ctx)
        cfg: AudioPreprocess = t.preprocessing
        if isinstance(raw, tuple) and len(raw) == 2:
            raw, rate = raw
        else:
            rate = ctx.options.get("sample_rate")
        w = to_float_waveform(raw)
        if w.ndim != (2 if ctx.batched else 1):
            raise SpecError(f"{ctx.prefix}{t.name!r} expects {'[N, samples]' if ctx.batched else 'a mono 1-D'} waveform, "
                            f"got shape {list(w.shape)}; mix channels down first")
        rate = resolve_rate(t, cfg, rate, ctx)
        return {t.name: fit_rank(features(w, rate, cfg, whole=self.whole_clip(t), log_mel=self.kernel(cfg)), t)}

    def kernel(self, pre):
        if pre.features != "log_mel":
            return None
        from ...frontends import native

        return native.log_mel

    def generate(self, t, batch: int, seed: int, base_dir: Path | None = None) -> dict[str, np.ndarray]:
        cfg: AudioPreprocess = t.preprocessing
        w = waveforms(batch, cfg.n_samples, cfg.sample_rate, seed)
        return {t.name: fit_rank(features(w, cfg.sample_rate, cfg, whole=self.whole_clip(t)), t).astype(t.dtype, copy=False)}

    def raw_example(self, t, seed: int = 0, base_dir: Path | None = None):
        cfg: AudioPreprocess = t.preprocessing
        return waveforms(1, cfg.n_samples, cfg.sample_rate, seed)[0], cfg.sample_rate

    def stream_adapter(self, t, *, base_dir: Path | None = None) -> StreamAdapter | None:
        return None  # audio is the stream's synced second source (edgemm.runtime.stream), not a paced one


MODALITY = AudioModality()
__all__ = ["AudioPreprocess", "AudioModality", "MODALITY", "waveforms", "features", "resolve_rate", "whisper_log_mel"]
