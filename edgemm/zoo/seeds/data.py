"""The seed models' data: the shipped calibration / evaluation files and the rendered training set.

Everything comes from the AV-MNIST-style material of ``edgemm.zoo.avmnist`` (FSDD speech + MNIST digits):
- ``export/seeds/eval.npz``: the 600 pairs of ``calibration_data/avmnist/eval.npz`` (FSDD takes 40-49, MNIST
  8000-9999: never trained on), with the seed models' extra keys added;
- ``export/seeds/calib.npz``: the first ``CALIB_ROWS`` pairs of ``calibration_data/avmnist/calib.npz``
  (training material: FSDD takes 0-39, MNIST 0-7999), same keys;
- training: ``calibration_data/avmnist/train-material.npz`` rendered by ``avmnist.training_pairs``.

Keys added to the avmnist pairs (``image`` uint8 frames, ``audio`` int16 8 kHz, ``digit``, ``speaker``):
``caption`` int64 [N, 8] (token ids of ``caption_text``, a caption with partial information, see
``captions``), ``prompt`` int64 [N, 8] (``prompt_text``, a prompt naming the digit) and ``duration``
float32 [N]: the length in seconds of the spoken digit in the audio window (the FSDD recording with its
leading and trailing silence trimmed, as ``avmnist.place_audio`` places it), a regression target the
recording really carries.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .. import avmnist
from ...iospec import AudioPreprocess, ImagePreprocess
from . import captions

# 32x32 frames and a 32-band log-mel of the 8 kHz recording: small inputs keep every seed model fast to train on one core.
IMAGE_PRE = ImagePreprocess(size=(32, 32), channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
AUDIO_PRE = AudioPreprocess(sample_rate=8000, window_s=1.0, n_fft=256, win_length=200, hop=160, n_mels=32,
                            fmin=20.0, fmax=4000.0, log_floor=1e-6)
CALIB_ROWS = 200
EXTRA_KEYS = ("caption", "caption_text", "prompt", "prompt_text", "duration")


def speech_duration(wave: np.ndarray) -> float:
    """Seconds of speech ``avmnist.place_audio`` puts in the window: the silence-trimmed recording, cut to fit."""
    limit = avmnist.AUDIO_WINDOW - 160
    return min(len(avmnist.trim_silence(np.asarray(wave, np.float32))), limit) / avmnist.FSDD_RATE


def add_seed_keys(pairs: dict, read_wave: Callable[[str], np.ndarray], seed: int) -> dict:
    """``pairs`` (avmnist sample arrays with ``fsdd_file``) plus captions, prompts and speech durations."""
    rng = np.random.default_rng(seed)
    digits = np.asarray(pairs["digit"])
    cap = captions.captions(digits, rng)
    pro = captions.prompts(digits, rng)
    cache: dict[str, float] = {}
    dur = []
    for name in pairs["fsdd_file"]:
        name = str(name)
        if name not in cache:
            cache[name] = speech_duration(read_wave(name))
        dur.append(cache[name])
    return {**pairs,
            "caption": captions.encode(captions.caption_tokenizer(), cap), "caption_text": np.array(cap),
            "prompt": captions.encode(captions.prompt_tokenizer(), pro), "prompt_text": np.array(pro),
            "duration": np.asarray(dur, np.float32)}


def build_split(avmnist_npz: Path, recordings: Path, seed: int, rows: int | None = None) -> dict:
    """A shipped avmnist split (``calibration_data/avmnist/*.npz``) with the seed keys; durations read from the
    original FSDD recordings in ``recordings``."""
    d = np.load(avmnist_npz)
    n = len(d["digit"]) if rows is None else min(rows, len(d["digit"]))
    pairs = {k: (d[k][:n] if np.ndim(d[k]) else d[k]) for k in d.files}
    return add_seed_keys(pairs, lambda name: avmnist.read_clip(Path(recordings) / name), seed)


def training_set(material: Path, renders: int, seed: int) -> dict:
    """The training split: every training take rendered ``renders`` times (``avmnist.training_pairs``) with the
    seed keys (fresh captions and prompts per render)."""
    pairs = avmnist.training_pairs(material, renders=renders, seed=seed)
    m = np.load(material)
    audio, offsets, files = m["fsdd_audio"], m["fsdd_offsets"], [str(f) for f in m["fsdd_file"]]  # one read each
    waves = {f: audio[offsets[i]:offsets[i + 1]].astype(np.float32) / 32768.0 for i, f in enumerate(files)}
    return add_seed_keys(pairs, waves.__getitem__, seed + 1000)


def features(split: dict) -> dict:
    """Model-level tensors of a split: ``image`` [N,3,32,32], ``audio`` [N,1,32,49] float32; token ids as they are."""
    from ...frontends.audio import preprocess_audio
    from ...frontends.image import preprocess_image

    return {"image": preprocess_image(split["image"], IMAGE_PRE),
            "audio": preprocess_audio(split["audio"], int(split.get("audio.sample_rate", avmnist.FSDD_RATE)), AUDIO_PRE),
            "caption": split["caption"], "prompt": split["prompt"]}
