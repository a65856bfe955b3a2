"""C pre-processing kernels (``_preproc``, built by ``pip install -e .``) with a numpy fallback.

``preprocess_image(frame, cfg, out=None)`` and ``log_mel(waveform, cfg, out=None)`` compute what
``edgemm.data.image.preprocess_image`` / ``edgemm.data.audio.log_mel`` compute (the training-time
reference frontends; equal within float tolerance, see tests/runtime/test_native.py) into a
preallocated float32 buffer, and release the GIL while they run. When the extension is not built
(no C compiler at install time) or ``EDGEMM_NATIVE=0`` is set, the numpy reference runs instead
and a warning says so once per process.
"""
from __future__ import annotations

import os
import threading
import warnings
from functools import lru_cache

import numpy as np

from ...iospec import AudioPreprocess, ImagePreprocess


class NativeFallbackWarning(RuntimeWarning):
    """The C pre-processing extension is not in use; the (slower) numpy reference runs instead."""


def _import():
    if os.environ.get("EDGEMM_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "disabled by EDGEMM_NATIVE=0"
    try:
        from . import _preproc
    except ImportError as exc:
        return None, (f"the C extension edgemm.runtime.native._preproc is not built ({exc}); rebuild it with "
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
        from ...data.image import preprocess_image as reference

        return _reference_into(reference(frame, cfg), out)
    frame = np.ascontiguousarray(frame)
    if frame.ndim not in (3, 4) or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        from ...data.image import preprocess_image as reference

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
    from ...data.audio import hann_window, mel_filterbank

    fb = np.ascontiguousarray(mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax), dtype=np.float32)
    nz = fb > 0
    start = np.where(nz.any(1), nz.argmax(1), 0).astype(np.int32)
    end = np.where(nz.any(1), fb.shape[1] - nz[:, ::-1].argmax(1), 0).astype(np.int32)
    win = np.ascontiguousarray(hann_window(cfg.win_length), dtype=np.float32)
    return win, fb, start, end


def log_mel(waveform: np.ndarray, cfg: AudioPreprocess, out: np.ndarray | None = None) -> np.ndarray:
    """``[n]`` or ``[N, n]`` float waveform at ``cfg.sample_rate`` -> ``[(N,) n_mels, n_frames]`` float32."""
    if _ext is None:
        from ...data.audio import log_mel as reference

        return _reference_into(reference(waveform, cfg), out)
    from ...data.audio import fit_window

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
        if _ext is None or frame.ndim != 3 or frame.dtype != np.uint8 or frame.shape[2] != 3 or not frame.flags.c_contiguous:
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
