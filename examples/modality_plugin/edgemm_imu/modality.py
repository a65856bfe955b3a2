"""The ``imu`` modality: accelerometer + gyroscope samples -> ``[N, 6, T]`` windows for the model."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemm.errors import SpecError
from edgemm.modalities.base import Context, Modality, StreamAdapter

from .csvreader import SCHEMES, to_uniform

G = 9.80665


@dataclass(frozen=True)
class ImuPreprocess:
    """``rate``: the model's sample rate (100-400 Hz); ``window_s``: the seconds a window covers (the window that ends
    at the frame); ``hop_s``: one window per ``hop_s`` in a stream; accelerometer values are divided by
    ``accel_scale`` (m/s² -> g), gyroscope values by ``gyro_scale``; ``layout``: ``NCT`` or ``NTC``;
    ``input_rate``: the rate of raw samples when the caller names none."""

    rate: int = 200
    window_s: float = 1.0
    hop_s: float = 0.1
    accel_scale: float = G
    gyro_scale: float = 1.0
    layout: str = "NCT"
    input_rate: int | None = None

    def __post_init__(self):
        if not isinstance(self.rate, int) or isinstance(self.rate, bool) or not 100 <= self.rate <= 400:
            raise SpecError(f"imu rate must be an integer from 100 to 400 Hz, not {self.rate!r}")
        for key in ("window_s", "hop_s", "accel_scale", "gyro_scale"):
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise SpecError(f"imu {key} must be a positive number, not {v!r}")
        if self.layout not in ("NCT", "NTC"):
            raise SpecError(f"imu layout must be 'NCT' ([N, 6, T]) or 'NTC' ([N, T, 6]), not {self.layout!r}")
        if self.n_samples < 2:
            raise SpecError(f"imu window_s {self.window_s} at {self.rate} Hz holds fewer than 2 samples")
        if self.input_rate is not None and (not isinstance(self.input_rate, int) or isinstance(self.input_rate, bool) or self.input_rate < 1):
            raise SpecError(f"imu input_rate must be a positive integer (Hz) or absent, not {self.input_rate!r}")

    @property
    def n_samples(self) -> int:
        return int(round(self.rate * self.window_s))

    def window(self, samples: np.ndarray) -> np.ndarray:
        """The last ``n_samples`` of ``[..., n, 6]`` at ``rate`` (the first sample repeated before the start), scaled,
        laid out -> ``[..., 6, T]`` or ``[..., T, 6]`` float32."""
        x = np.asarray(samples, np.float32)
        n = x.shape[-2]
        if n >= self.n_samples:
            x = x[..., n - self.n_samples:, :]
        else:
            x = np.concatenate([np.repeat(x[..., :1, :], self.n_samples - n, axis=-2), x], axis=-2)
        scale = np.asarray([self.accel_scale] * 3 + [self.gyro_scale] * 3, np.float32)
        x = x / scale
        return np.ascontiguousarray(x if self.layout == "NTC" else np.swapaxes(x, -1, -2))


def motion(batch: int, seconds: float, rate: int, seed: int) -> np.ndarray:
    """``[batch, n, 6]`` plausible IMU samples: gravity on z, periodic steps of random cadence, rotation, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    out = np.empty((batch, len(t), 6), np.float32)
    for b in range(batch):
        f = rng.uniform(0.5, 3.0)
        amp = rng.uniform(0.0, 6.0)
        acc = [amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for _ in range(2)] + [G + amp * np.sin(4 * np.pi * f * t)]
        gyr = [rng.uniform(0, 2) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for _ in range(3)]
        out[b] = np.stack(acc + gyr, axis=1) + rng.normal(0, 0.05, (len(t), 6))
    return out


class ImuAdapter(StreamAdapter):
    """A stream item of the IMU sources is the window itself (``item.image``: ``[n_samples, 6]`` at the model's rate)."""

    def __init__(self, cfg: ImuPreprocess):
        self.cfg = cfg
        self.out_shape = (1, 6, cfg.n_samples) if cfg.layout == "NCT" else (1, cfg.n_samples, 6)

    def __call__(self, item, out=None):
        res = self.cfg.window(item.image)[None]
        if out is None:
            return res
        out[...] = res
        return out


class ImuModality(Modality):
    name = "imu"
    description = "accelerometer + gyroscope (6 channels, 100-400 Hz) windows, from CSV files or serial-like line sources"
    params = ImuPreprocess
    options = ("sample_rate",)
    schemes = SCHEMES
    paced = True

    def preprocess(self, t, raw, ctx: Context):
        cfg: ImuPreprocess = t.preprocessing
        rate = ctx.options.get("sample_rate")
        if isinstance(raw, tuple) and len(raw) == 2:
            raw, rate = raw
        rate = rate if rate is not None else cfg.input_rate
        if rate is None:
            raise SpecError(f"{ctx.prefix}imu input {t.name!r} needs the rate of the samples: pass {t.name}=(samples, RATE) "
                            f"(the model runs at {cfg.rate} Hz)")
        x = np.asarray(raw, np.float32)
        if x.ndim != (3 if ctx.batched else 2) or x.shape[-1] != 6:
            raise SpecError(f"{ctx.prefix}imu input {t.name!r} expects {'[N, n, 6]' if ctx.batched else '[n, 6]'} samples "
                            f"(ax, ay, az, gx, gy, gz), got shape {list(x.shape)}")
        if int(rate) != cfg.rate:
            x = np.stack([to_uniform(None, s, cfg.rate, float(rate)) for s in (x if ctx.batched else x[None])])
        elif not ctx.batched:
            x = x[None]
        return {t.name: cfg.window(x).astype(t.dtype, copy=False)}

    def generate(self, t, batch: int, seed: int, base_dir: Path | None = None):
        cfg: ImuPreprocess = t.preprocessing
        return {t.name: cfg.window(motion(batch, cfg.window_s, cfg.rate, seed)).astype(t.dtype, copy=False)}

    def raw_example(self, t, seed: int = 0, base_dir: Path | None = None):
        cfg: ImuPreprocess = t.preprocessing
        return motion(1, cfg.window_s, cfg.rate, seed)[0], cfg.rate

    def stream_adapter(self, t, *, base_dir: Path | None = None):
        return ImuAdapter(t.preprocessing)

    def open_source(self, uri: str, *, clock=None, pace: bool = False, t=None):
        from .source import open_imu

        return open_imu(uri, t.preprocessing, clock=clock, pace=pace)
