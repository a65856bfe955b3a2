"""Audio pre-processing parameters: mono waveform -> the model's features."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import SpecError
from ..base import OPTIONAL

FEATURES = ("log_mel", "waveform", "whisper_log_mel")


@dataclass(frozen=True)
class AudioPreprocess:
    """``features``: ``log_mel`` (HTK mel filters, natural log, the ``window_s`` seconds that end at the frame;
    the C kernel and the streaming frontend), ``waveform`` (the raw window at ``sample_rate``, zero-mean
    unit-variance when ``normalize``: Wav2Vec2's input) or ``whisper_log_mel`` (Whisper's feature extractor:
    centred STFT, Slaney mel filters, log10, floor at max - 8, ``(x + 4) / 4``; the first ``window_s`` seconds,
    right-padded with silence). ``input_rate``: the rate of raw audio when the caller names none (None: every
    call must say it; a wrong guess resamples the wrong way without a word)."""

    sample_rate: int = 16000
    window_s: float = 1.0
    n_fft: int = 512
    win_length: int = 400
    hop: int = 160
    n_mels: int = 64
    fmin: float = 20.0
    fmax: float = 8000.0
    log_floor: float = 1e-6
    features: str = field(default="log_mel", metadata=OPTIONAL)
    normalize: bool = field(default=False, metadata=OPTIONAL)
    input_rate: int | None = field(default=None, metadata=OPTIONAL)

    @property
    def n_samples(self) -> int:
        return int(round(self.sample_rate * self.window_s))

    @property
    def n_frames(self) -> int:
        if self.features == "whisper_log_mel":
            return self.n_samples // self.hop
        return 1 + (self.n_samples - self.win_length) // self.hop

    def __post_init__(self):
        for key in ("sample_rate", "n_fft", "win_length", "hop", "n_mels"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"audio {key} must be a positive integer, not {v!r}")
        if not isinstance(self.window_s, (int, float)) or isinstance(self.window_s, bool) or not self.window_s > 0:
            raise SpecError(f"audio window_s must be a positive number of seconds, not {self.window_s!r}")
        if self.features not in FEATURES:
            raise SpecError(f"audio features must be one of {', '.join(map(repr, FEATURES))}, not {self.features!r}")
        if self.win_length > self.n_fft:
            raise SpecError(f"audio win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if self.fmax > self.sample_rate / 2:
            raise SpecError(f"audio fmax ({self.fmax}) must be <= sample_rate/2 ({self.sample_rate / 2})")
        if self.features == "log_mel" and self.n_samples < self.win_length:
            raise SpecError(f"audio window_s ({self.window_s}) holds {self.n_samples} samples, fewer than win_length ({self.win_length})")
        if self.input_rate is not None and (not isinstance(self.input_rate, int) or isinstance(self.input_rate, bool) or self.input_rate < 1):
            raise SpecError(f"audio input_rate must be a positive integer (Hz) or absent, not {self.input_rate!r}")
        if not isinstance(self.normalize, bool):
            raise SpecError(f"audio normalize must be true or false, not {self.normalize!r}")
