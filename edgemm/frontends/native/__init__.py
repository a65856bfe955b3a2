"""C pre-processing kernels (``_preproc``, built by ``pip install -e .``) with a numpy fallback.

``preprocess_image(frame, cfg, out=None)`` and ``log_mel(waveform, cfg, out=None)`` compute what
``edgemm.frontends.image.preprocess_image`` / ``edgemm.frontends.audio.log_mel`` compute (the training-time
reference frontends; equal within float tolerance, see tests/runtime/test_native_preproc.py) into a
preallocated float32 buffer, and release the GIL while they run when the work is more than a few
microseconds (per-frame calls keep it: re-taking it in a busy stream costs more; see _preproc.c).
``StreamingLogMel`` is the incremental audio frontend of a stream, ``TopLabels`` its per-frame
post-processing. When the extension is not built
(no C compiler at install time) or ``EDGEMM_NATIVE=0`` is set, the numpy reference runs instead
and a warning says so once per process.
"""
from __future__ import annotations

import math
import os
import threading
import warnings
from functools import lru_cache

from typing import Any

import numpy as np

AudioPreprocess = Any  # edgemm.modalities' params dataclass, duck-typed: the frontends sit below the modalities
ImagePreprocess = Any  # edgemm.modalities' params dataclass, duck-typed: the frontends sit below the modalities


class NativeFallbackWarning(RuntimeWarning):
    """The C pre-processing extension is not in use; the (slower) numpy reference runs instead."""


def _import():
    if os.environ.get("EDGEMM_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "disabled by EDGEMM_NATIVE=0"
    try:
        from . import _preproc
    except ImportError as exc:
        return None, (f"the C extension edgemm.frontends.native._preproc is not built ({exc}); rebuild it with "
                      "`pip install -e .` on a machine with a C compiler and Python headers (apt-get install gcc python3-dev)")
    return _preproc, ""


_ext, _reason = _import()
_warned = False
_warn_lock = threading.Lock()


def available() -> bool:
    """True when the compiled kernels are in use."""
    return _ext is not None


def reason() -> str:
    """Why the compiled kernels are not in use ('' when they are)."""
    return _reason


def warn_fallback() -> None:
    """Warn (once per process) that the numpy reference runs instead of the C kernels."""
    global _warned
    if _ext is not None or _warned:
        return
    with _warn_lock:
        if _warned:
            return
        _warned = True
    msg = f"edgemm: using the numpy pre-processing (slower): {_reason}"
    from ...log import logger

    logger.warning(msg)
    warnings.warn(msg, NativeFallbackWarning, stacklevel=3)


# ------------------------------------------------------------------------------------- image

@lru_cache(maxsize=32)
def _image_consts(cfg: ImagePreprocess):
    # The reference's float32 arithmetic: mean * 255 and 1 / (std * 255), both float32.
    mean = np.asarray(cfg.mean, dtype=np.float32) * np.float32(255.0)
    inv_std = np.float32(1.0) / (np.asarray(cfg.std, dtype=np.float32) * np.float32(255.0))
    return (tuple(float(v) for v in mean), tuple(float(v) for v in inv_std), int(cfg.channel_order == "BGR"),
            int(cfg.layout == "NCHW"))


def image_out_shape(cfg: ImagePreprocess, batch: int = 1) -> tuple[int, ...]:
    h, w = cfg.size
    return (batch, 3, h, w) if cfg.layout == "NCHW" else (batch, h, w, 3)


def _reference_into(res: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """The numpy reference's result (extension not built), copied into ``out`` when given."""
    warn_fallback()
    if out is None:
        return res
    out[...] = res
    return out


def preprocess_image(frame: np.ndarray, cfg: ImagePreprocess, out: np.ndarray | None = None) -> np.ndarray:
    """HxWx3 (or NxHxWx3) uint8 RGB -> [N, 3, H, W] (or NHWC) float32, into ``out`` when given."""
    if _ext is None:
        from ..image import preprocess_image as reference

        return _reference_into(reference(frame, cfg), out)
    frame = np.ascontiguousarray(frame)
    if frame.ndim not in (3, 4) or frame.shape[-1] != 3 or frame.dtype != np.uint8 or 0 in frame.shape[-3:-1]:
        from ..image import preprocess_image as reference

        return reference(frame, cfg)  # the reference raises the one-line SpecError
    frames = frame[None] if frame.ndim == 3 else frame
    n, sh, sw = frames.shape[:3]
    shape = image_out_shape(cfg, n)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {shape}, got {out.dtype} {out.shape}")
    mean, inv_std, bgr, nchw = _image_consts(cfg)
    oh, ow = cfg.size
    for i in range(n):
        _ext.image(frames[i], out[i], sh, sw, oh, ow, bgr, nchw, mean, inv_std)
    return out


# ------------------------------------------------------------------------------------- audio

@lru_cache(maxsize=16)
def _mel_consts(cfg: AudioPreprocess):
    from ..audio import hann_window, mel_filterbank

    fb = np.ascontiguousarray(mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax), dtype=np.float32)
    nz = fb > 0
    start = np.where(nz.any(1), nz.argmax(1), 0).astype(np.int32)
    end = np.where(nz.any(1), fb.shape[1] - nz[:, ::-1].argmax(1), 0).astype(np.int32)
    win = np.ascontiguousarray(hann_window(cfg.win_length), dtype=np.float32)
    return win, fb, start, end


def log_mel(waveform: np.ndarray, cfg: AudioPreprocess, out: np.ndarray | None = None) -> np.ndarray:
    """``[n]`` or ``[N, n]`` float waveform at ``cfg.sample_rate`` -> ``[(N,) n_mels, n_frames]`` float32."""
    if _ext is None:
        from ..audio import log_mel as reference

        return _reference_into(reference(waveform, cfg), out)
    from ..audio import fit_window

    x = fit_window(np.asarray(waveform, dtype=np.float32), cfg.n_samples)
    batch = x.shape[:-1]
    x = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
    shape = (*batch, cfg.n_mels, cfg.n_frames)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {shape}, got {out.dtype} {out.shape}")
    flat = out.reshape(-1, cfg.n_mels, cfg.n_frames)
    win, fb, start, end = _mel_consts(cfg)
    for i in range(x.shape[0]):
        _ext.log_mel(x[i], flat[i], win, fb, start, end, cfg.n_fft, cfg.hop, cfg.n_frames, cfg.n_mels, cfg.log_floor)
    return out


# ------------------------------------------------------------------------------------- kernels

class ImageKernel:
    """One image input's pre-processing bound to its config: ``kernel(frame, out)`` with the
    least per-call overhead (the streaming hot path). ``out`` is ``[1, 3, H, W]`` (or NHWC) float32."""

    def __init__(self, cfg: ImagePreprocess):
        self.cfg = cfg
        self.out_shape = image_out_shape(cfg, 1)
        self._args = (*cfg.size, *_image_consts(cfg)[2:], *_image_consts(cfg)[:2])
        self.native = _ext is not None

    def new_output(self) -> np.ndarray:
        return np.empty(self.out_shape, dtype=np.float32)

    def __call__(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = self.new_output()
        if (_ext is None or frame.ndim != 3 or frame.dtype != np.uint8 or frame.shape[2] != 3 or not frame.flags.c_contiguous
                or 0 in frame.shape):  # the reference raises the one-line SpecError
            return preprocess_image(frame, self.cfg, out)
        oh, ow, bgr, nchw, mean, inv_std = self._args
        _ext.image(frame, out, frame.shape[0], frame.shape[1], oh, ow, bgr, nchw, mean, inv_std)
        return out


class LogMelKernel:
    """One audio input's log-mel bound to its config: ``kernel(window, out)`` where ``window`` is
    the ``cfg.n_samples`` float32 samples at ``cfg.sample_rate`` that end at the frame; ``out`` is
    ``[1, 1, n_mels, n_frames]`` float32."""

    def __init__(self, cfg: AudioPreprocess):
        self.cfg = cfg
        self.out_shape = (1, 1, cfg.n_mels, cfg.n_frames)
        self.native = _ext is not None

    def new_output(self) -> np.ndarray:
        return np.empty(self.out_shape, dtype=np.float32)

    def __call__(self, window: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = self.new_output()
        log_mel(window, self.cfg, out.reshape(self.cfg.n_mels, self.cfg.n_frames))
        return out


# ------------------------------------------------------------------------------------- streaming audio

def resample_segment(x: np.ndarray, x_start: int, up: int, down: int, m0: int, out: np.ndarray) -> np.ndarray:
    """Outputs ``m0 .. m0 + len(out) - 1`` of the resampled stream whose samples ``x_start ..`` are
    in ``x`` (zero outside), into ``out`` (float32, contiguous). C when built, else the numpy reference
    (``edgemm.frontends.audio.resample_segment``)."""
    from ..audio import polyphase_bank, resample_segment as reference

    if _ext is None:
        warn_fallback()
        out[...] = reference(x, x_start, up, down, m0, len(out))
        return out
    bank, half_len, taps = polyphase_bank(up, down)
    _ext.resample(x, int(x_start), bank, up, down, half_len, taps, int(m0), out)
    return out


class _Buffer:
    """A growable float32 buffer of consecutive stream samples ``[base, end)`` (linear, compacted
    to the front when it fills, so every segment is contiguous for the kernels)."""

    def __init__(self, capacity: int, base: int = 0):
        self.a = np.zeros(max(16, capacity), np.float32)
        self.base = base
        self.end = base

    def reserve(self, keep_from: int, n_more: int) -> None:
        """Room for ``n_more`` samples past ``end``; samples before ``keep_from`` may be dropped."""
        keep_from = min(max(keep_from, self.base), self.end)
        used = self.end - keep_from
        if self.end - self.base + n_more <= len(self.a):
            return
        src = self.a[keep_from - self.base:self.end - self.base]
        if used + n_more > len(self.a):
            a = np.zeros(max(2 * len(self.a), used + n_more), np.float32)
            a[:used] = src
            self.a = a
        else:
            self.a[:used] = src.copy() if used > keep_from - self.base else src
        self.base = keep_from

    def view(self, start: int, stop: int) -> np.ndarray:
        return self.a[start - self.base:stop - self.base]


class StreamingLogMel:
    """The audio frontend of one audio input, incremental: a stream at ``source_rate`` goes in by
    ``push(samples)``; ``window(end, out)`` gives the ``[1, 1, n_mels, n_frames]`` log-mel of the
    ``cfg.window_s`` seconds that end at resampled index ``end`` (an index on the model-rate
    stream; ``hop_aligned_end`` snaps any index to the hop grid).

    Each new sample is resampled once (``scipy.signal.resample_poly``'s filter, designed once, run
    as a polyphase filter over the stream) and each STFT hop is computed once into a ring of mel
    frames, so a video frame costs only the audio that arrived since the previous one. The numbers
    are those of the offline frontend applied to the whole stream resampled once: ``log_mel`` of
    ``resample(stream)[end - n_samples:end]`` (zero before the start of the stream). Frames that
    need audio not pushed yet are computed as if the stream ended there (zeros), and not kept.
    With the extension built, the whole state machine is the C object ``StreamFrontend`` (one call
    per push or window); else this numpy reference runs, with the same results."""

    LAZY_FRAMES = 64  # complete STFT frames that may wait for a window before push computes them

    def __init__(self, cfg: AudioPreprocess, source_rate: int):
        from ..audio import resample_factors

        self.cfg = cfg
        self.rate = int(source_rate)
        self.up, self.down = resample_factors(self.rate, cfg.sample_rate)
        self.same_rate = self.up == self.down == 1
        if not self.same_rate:
            from ..audio import polyphase_bank

            self._bank, self._half, self._taps = polyphase_bank(self.up, self.down)
        self._hop, self._wl, self._ns, self._nf, self._nm = cfg.hop, cfg.win_length, cfg.n_samples, cfg.n_frames, cfg.n_mels
        self.out_shape = (1, 1, cfg.n_mels, cfg.n_frames)
        self._out_size = cfg.n_mels * cfg.n_frames
        self.native = _ext is not None
        self._c = None
        if self.native:  # the same state machine in C (StreamFrontend): a video frame's audio step is one call
            bank, half, taps = (self._bank, self._half, self._taps) if not self.same_rate else (np.ones((1, 1), np.float32), 0, 1)
            win, fb, start, stop = _mel_consts(cfg)
            self._c = _ext.StreamFrontend(bank, self.up, self.down, half, taps, win, fb, start, stop, cfg.n_fft, cfg.hop,
                                          cfg.n_samples, cfg.n_frames, cfg.n_mels, cfg.log_floor, self.rate, cfg.sample_rate,
                                          self.LAZY_FRAMES)
            return
        hop, wl, nf = cfg.hop, cfg.win_length, cfg.n_frames
        pad = -(-wl // hop) * hop + -(-cfg.n_samples // hop) * hop  # zeros before the stream: whole windows of silence
        self.x = _Buffer(4 * self.rate)  # source samples [base, end) (end: samples pushed)
        self.y = _Buffer(4 * cfg.sample_rate + pad, base=-pad)  # resampled stream, zeros before index 0
        self.y.end = 0
        self.keep = 2 * nf  # mel frames kept behind the newest one
        self.mel = np.zeros((cfg.n_mels, 4 * nf + 64), np.float32)
        self.f_base = self.f_end = -pad // hop  # frame j starts at resampled index j * hop
        self._advance()

    # --------------------------------------------------------------- geometry
    def hop_aligned_end(self, end: float) -> int:
        """The largest window end <= ``end`` whose frames sit on the hop grid of the stream."""
        n, hop = self._ns, self._hop
        return n + math.floor((end - n) / hop) * hop

    def resampled_index(self, source_index: float) -> float:
        """Model-rate stream position of source sample index ``source_index``."""
        return source_index * self.up / self.down

    # --------------------------------------------------------------- input
    def push(self, samples: np.ndarray) -> None:
        """Append consecutive mono float32 samples at the source rate. They are resampled now; their
        STFT frames are computed when a window needs them (``window``: one batch per video frame), or
        here once ``LAZY_FRAMES`` complete frames are waiting (memory stays bounded without windows)."""
        x = samples if type(samples) is np.ndarray and samples.dtype == np.float32 and samples.ndim == 1 \
            and samples.flags.c_contiguous else np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        if self._c is not None:
            self._c.push(x)
            return
        n = len(x)
        if not n:
            return
        y = self.y
        if self.same_rate:
            y.reserve(self.f_end * self._hop, n)
            y.a[y.end - y.base:y.end - y.base + n] = x
            y.end += n
        else:
            xb = self.x
            xb.reserve(self._x_needed(y.end), n)
            xb.a[xb.end - xb.base:xb.end - xb.base + n] = x
            xb.end += n
            ready = -((self._half - xb.end * self.up) // self.down)  # outputs whose taps are all in
            if ready > y.end:
                self._resample_into(y.end, ready)
                y.end = ready
        if (y.end - self._wl) // self._hop + 1 - self.f_end >= self.LAZY_FRAMES:
            self._advance()

    @property
    def samples_in(self) -> int:
        """Source samples pushed so far."""
        if self._c is not None:
            return self._c.state()["samples_in"]
        return self.x.end if not self.same_rate else self.y.end

    def state(self) -> dict:
        """Buffer capacities (samples, mel columns) and stream positions: what tests and debugging look at."""
        if self._c is not None:
            return self._c.state()
        return {"x_capacity": len(self.x.a), "y_capacity": len(self.y.a), "mel_capacity": self.mel.shape[1],
                "f_base": self.f_base, "f_end": self.f_end, "y_end": self.y.end, "samples_in": self.samples_in}

    def _x_needed(self, m: int) -> int:
        return (m * self.down + self._half) // self.up - self._taps + 1

    def _resample_into(self, m0: int, m1: int) -> None:
        """Resampled samples [m0, m1) into the y buffer (x treated as zero past what was pushed)."""
        if m1 <= m0:
            return
        self.y.reserve(self.f_end * self._hop, m1 - self.y.end)
        lo = max(self.x.base, self._x_needed(m0))
        resample_segment(self.x.view(lo, self.x.end), lo, self.up, self.down, m0, self.y.view(m0, m1))

    def _frames_into(self, f0: int, f1: int) -> None:
        """Mel frames [f0, f1) (their samples are in the y buffer) into the ring columns (numpy reference)."""
        from ..audio import log_mel_frames

        warn_fallback()
        hop, cfg = self._hop, self.cfg
        cap = self.mel.shape[1]
        while f0 < f1:
            if f0 - self.f_base >= cap:
                raise RuntimeError("mel ring overflow")  # _make_room prevents it
            k = min(f1 - f0, cap - (f0 - self.f_base))
            seg = self.y.view(f0 * hop, (f0 + k - 1) * hop + self._wl)
            col = f0 - self.f_base
            self.mel[:, col:col + k] = log_mel_frames(seg, k, cfg)
            f0 += k

    def _make_room(self, last: int, keep_from: int) -> None:
        """Room in the ring for frames up to ``last`` (inclusive), dropping frames before ``keep_from``."""
        cap = self.mel.shape[1]
        if last - self.f_base < cap:
            return
        keep_from = max(self.f_base, min(keep_from, self.f_end))
        used = self.f_end - keep_from
        if last - keep_from >= cap:
            grown = np.zeros((self.cfg.n_mels, 2 * (last - keep_from + 1)), np.float32)
            grown[:, :used] = self.mel[:, keep_from - self.f_base:self.f_end - self.f_base]
            self.mel = grown
        else:
            self.mel[:, :used] = self.mel[:, keep_from - self.f_base:self.f_end - self.f_base].copy()
        self.f_base = keep_from

    def _advance(self) -> None:
        ready = (self.y.end - self._wl) // self._hop + 1  # frames whose samples are all in
        if ready > self.f_end:
            self._make_room(ready - 1, min(self.f_end, ready - self.keep))
            self._frames_into(self.f_end, ready)
            self.f_end = ready

    # --------------------------------------------------------------- output
    def window(self, end: int, out: np.ndarray | None = None) -> np.ndarray | None:
        """The log-mel of the window ending at resampled index ``end`` (hop-aligned, see
        ``hop_aligned_end``), into ``out``; None when that window is older than the frames kept
        (windows go forward in time; the caller falls back to the one-shot frontend)."""
        hop, nf = self._hop, self._nf
        if (end - self._ns) % hop:
            raise ValueError(f"window end {end} is not on the hop grid (use hop_aligned_end)")
        if self._c is not None:
            fits = out is not None and out.dtype == np.float32 and out.flags.c_contiguous and out.size == self._out_size
            into = out if fits else np.empty(self.out_shape, np.float32)
            if not self._c.window(int(end), into):
                return None
            if out is not None and into is not out:
                out[...] = into.reshape(out.shape)
            return out if out is not None else into
        first = (end - self._ns) // hop
        last = first + nf - 1
        if first < self.f_base:
            return None
        if last >= self.f_end:  # frames not computed yet: one batch (those whose audio is not all in are
            # computed as if the stream ended here, and not kept)
            self._make_room(last, first)
            need = last * hop + self._wl
            y = self.y
            if need > y.end:
                y.reserve(self.f_end * hop, need - y.end)
                # the offline resampler's output of the stream so far has ceil(n * up / down) samples
                stop = y.end if self.same_rate else max(y.end, min(need, -(-self.x.end * self.up // self.down)))
                self._resample_into(y.end, stop)
                y.a[stop - y.base:need - y.base] = 0.0
            self._frames_into(self.f_end, last + 1)
            self.f_end = max(self.f_end, min(last + 1, (y.end - self._wl) // hop + 1))
        if out is None:
            out = np.empty(self.out_shape, np.float32)
        c = first - self.f_base
        out.reshape(self._nm, nf)[...] = self.mel[:, c:c + nf]
        return out


class TopLabels:
    """Post-processing for one frame: the top label and its softmax score per classification head.
    Same answer as ``Runtime.labels`` (float64 softmax over every sample) for sample 0, at a fraction of
    its cost: the argmax on the raw logits, and one ``exp`` pass for the score (``1 / sum(exp(l - max))``;
    the C kernel ``top1`` for float32 logits, numpy in the logits' own dtype otherwise)."""

    def __init__(self, outputs):
        self.heads = [(t.name, list(t.labels)) for t in outputs if t.labels is not None]

    def __call__(self, raw: dict) -> dict[str, tuple[str, float]]:
        out = {}
        for name, labels in self.heads:
            v = raw.get(name)
            if v is None:
                continue
            row = v[0] if v.ndim > 1 else v
            if _ext is not None and row.dtype == np.float32 and row.flags.c_contiguous:
                i, score = _ext.top1(row)  # one C call: argmax + the score summed in double
            else:
                i = int(row.argmax())
                score = 1.0 / float(np.exp(row - row[i]).sum())
            out[name] = (labels[i], score)
        return out


# ------------------------------------------------------------------------------------- int8 feeds and outputs

class Int8Codec:
    """The float <-> int8/uint8 mapping of one quantized model input or output (scale, zero-point), computed the
    way numpy's reference does (``q = clip(rint(x * float32(1 / scale)) + zero)``, ``x = (q - zero) * scale`` in
    float32), by the C kernels ``quantize`` / ``dequantize`` (one pass each) or numpy when they are not built."""

    def __init__(self, dtype, scale: float, zero: int):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
            raise ValueError(f"Int8Codec takes int8 or uint8, not {self.dtype}")
        self.signed = self.dtype == np.dtype(np.int8)
        self.scale, self.inv, self.zero = np.float32(scale), np.float32(1.0 / scale), int(zero)
        info = np.iinfo(self.dtype)
        self.lo, self.hi = info.min, info.max

    def quantize(self, array: np.ndarray, out: np.ndarray) -> np.ndarray:
        """float32 ``array`` into ``out`` (C-contiguous, of this dtype, as many elements); returns ``out``."""
        if _ext is not None and array.dtype == np.float32 and array.flags.c_contiguous:
            _ext.quantize(array, out, self.inv, float(self.zero), self.signed)
            return out
        q = np.multiply(array, self.inv, dtype=np.float32)
        np.rint(q, out=q)
        q += np.float32(self.zero)
        np.clip(q, self.lo, self.hi, out=q)
        np.copyto(out, q.reshape(out.shape), casting="unsafe")
        return out

    def dequantize(self, array: np.ndarray) -> np.ndarray:
        """int8/uint8 ``array`` -> a new float32 array of its shape."""
        out = np.empty(array.shape, np.float32)
        if _ext is not None and array.dtype == self.dtype and array.flags.c_contiguous:
            _ext.dequantize(array, out, self.scale, float(self.zero), self.signed)
            return out
        np.multiply(np.subtract(array, np.float32(self.zero), dtype=np.float32), self.scale, out=out)
        return out
