"""AV-MNIST-style reference task built from real recordings (FSDD speech + MNIST digits).

A sample pairs a spoken digit (FSDD, 8 kHz, 6 speakers) with a handwritten digit of the same
label rendered into a camera-like RGB frame (coloured gradient background, random scale,
position and colour). A share of samples is corrupted in one modality (low-SNR audio;
occluded, blurred, faint or noisy frames) so that neither modality alone is perfect and a
fusion model has to use both.

Splits (fixed, see DESIGN.md): FSDD takes 0-39 of every speaker and digit are training and
calibration material, takes 40-49 evaluation; MNIST test-set images 0-7999 training and
calibration, 8000-9999 evaluation. Nothing of the evaluation split is seen in training.

Used by ``scripts/build_avmnist.py`` (ships the calibration/evaluation files and the training
material), by ``scripts/train_avnet.py`` (renders fresh training pairs every epoch) and by the avnet
recipe's ``[data.training]`` generator, :func:`training_pairs` (renders the fine-tuning split of
pruning and QAT from the shipped training material).
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..frontends.image import resize_bilinear

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
DIGITS = tuple(str(d) for d in range(10))
FSDD_RATE = 8000
FRAME_SIZE = 64
TRAIN_TAKES = range(0, 40)
EVAL_TAKES = range(40, 50)
MNIST_TRAIN = range(0, 8000)
MNIST_EVAL = range(8000, 10000)
AUDIO_WINDOW = FSDD_RATE  # 1.0 s at 8 kHz; the model's frontend resamples to 16 kHz


@dataclass(frozen=True)
class Clip:
    digit: int
    speaker: int
    take: int
    path: Path


def read_mnist(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test set from its IDX gz files -> (images [10000,28,28] uint8, labels [10000] int64)."""
    with gzip.open(root / "t10k-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    n, h, w = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, h, w)
    with gzip.open(root / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8).astype(np.int64)
    return images, labels


def list_fsdd(root: Path) -> list[Clip]:
    pattern = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
    clips = []
    for p in sorted(Path(root).glob("*.wav")):
        m = pattern.match(p.name)
        if m and m.group(2) in SPEAKERS:
            clips.append(Clip(int(m.group(1)), SPEAKERS.index(m.group(2)), int(m.group(3)), p))
    return clips


def read_clip(path: Path) -> np.ndarray:
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=False)
    if rate != FSDD_RATE:
        raise ValueError(f"{path}: expected {FSDD_RATE} Hz, got {rate}")
    return audio if audio.ndim == 1 else audio.mean(axis=1)


def trim_silence(x: np.ndarray, frame: int = 160, rel_db: float = -35.0) -> np.ndarray:
    energy = np.array([np.sqrt(np.mean(x[i:i + frame] ** 2) + 1e-12) for i in range(0, max(1, len(x) - frame + 1), frame)])
    loud = np.nonzero(20 * np.log10(energy / energy.max()) > rel_db)[0]
    if len(loud) == 0:
        return x
    return x[loud[0] * frame: min(len(x), (loud[-1] + 1) * frame)]


def place_audio(clip: np.ndarray, rng: np.random.Generator, corrupt: bool) -> np.ndarray:
    """Speech placed at a random offset inside a 1.0 s window plus background noise -> int16."""
    x = trim_silence(clip)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.3, 0.9)
    limit = AUDIO_WINDOW - 160
    if len(x) > limit:
        start = (len(x) - limit) // 2
        x = x[start:start + limit]
    window = np.zeros(AUDIO_WINDOW, dtype=np.float32)
    offset = int(rng.integers(0, AUDIO_WINDOW - len(x) + 1))
    window[offset:offset + len(x)] = x
    speech_rms = np.sqrt(np.mean(x ** 2)) + 1e-9
    snr_db = rng.uniform(-12.0, -3.0) if corrupt else rng.uniform(8.0, 30.0)
    noise = rng.standard_normal(AUDIO_WINDOW).astype(np.float32)
    if rng.random() < 0.5:  # brown-ish noise half of the time
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
    noise *= speech_rms * 10 ** (-snr_db / 20) / (np.sqrt(np.mean(noise ** 2)) + 1e-9)
    out = np.clip(window + noise, -1.0, 1.0)
    return (out * 32767).astype(np.int16)


def _colour(rng):
    return rng.uniform(0, 255, size=3).astype(np.float32)


def render_frame(digit: np.ndarray, rng: np.random.Generator, corrupt: bool) -> np.ndarray:
    """A 28x28 MNIST digit rendered into a FRAME_SIZE x FRAME_SIZE RGB camera-like frame (uint8)."""
    s = FRAME_SIZE
    c0, c1 = _colour(rng), _colour(rng)
    direction = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    t = (np.cos(direction) * xx + np.sin(direction) * yy)
    t = (t - t.min()) / (t.max() - t.min() + 1e-9)
    frame = c0 * (1 - t[..., None]) + c1 * t[..., None]
    bg_mean = frame.mean(axis=(0, 1))
    fg = _colour(rng)
    for _ in range(20):  # keep the digit visible against the background
        if np.abs(fg - bg_mean).sum() > 180:
            break
        fg = _colour(rng)
    size = int(rng.integers(30, 57))
    glyph = resize_bilinear(digit[..., None], size, size)[..., 0] / 255.0
    y, x = (int(v) for v in rng.integers(0, s - size + 1, size=2))
    kind = rng.choice(["occlude", "faint", "blur", "noise"]) if corrupt else None
    alpha = glyph * (rng.uniform(0.12, 0.25) if kind == "faint" else 1.0)
    region = frame[y:y + size, x:x + size]
    frame[y:y + size, x:x + size] = region * (1 - alpha[..., None]) + fg * alpha[..., None]
    if kind == "occlude":
        h = int(size * rng.uniform(0.45, 0.65))
        oy = y + int(rng.integers(0, size - h + 1))
        if rng.random() < 0.5:
            frame[oy:oy + h, x:x + size] = _colour(rng)
        else:
            frame[y:y + size, x + (oy - y):x + (oy - y) + h] = _colour(rng)
    elif kind == "blur":
        small = resize_bilinear(frame, 9, 9)
        frame = resize_bilinear(small, s, s)
    elif kind == "noise":
        frame = frame + rng.normal(0, 90, size=frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def make_pairs(clips, mnist_images, mnist_labels, mnist_indices, rng, corrupt_rate=0.2, read=None):
    """Render aligned samples; each clip gets a distinct image of the same digit when possible.

    ``read(clip)`` -> the clip's float waveform (default: decode ``clip.path``)."""
    read = read or (lambda clip: read_clip(clip.path))
    pools = {d: list(rng.permutation([i for i in mnist_indices if mnist_labels[i] == d])) for d in range(10)}
    n = len(clips)
    images = np.empty((n, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    audio = np.empty((n, AUDIO_WINDOW), dtype=np.int16)
    used = np.empty(n, dtype=np.int64)
    # Corrupt at most one modality per sample so the task stays solvable with both.
    which = rng.random(n)
    for k, clip in enumerate(clips):
        pool = pools[clip.digit]
        idx = pool.pop() if pool else int(rng.choice([i for i in mnist_indices if mnist_labels[i] == clip.digit]))
        used[k] = idx
        images[k] = render_frame(mnist_images[idx], rng, corrupt=which[k] < corrupt_rate)
        audio[k] = place_audio(read(clip), rng, corrupt=corrupt_rate <= which[k] < 2 * corrupt_rate)
    return {
        "image": images,
        "audio": audio,
        "audio.sample_rate": np.int64(FSDD_RATE),
        "digit": np.array([c.digit for c in clips], dtype=np.int64),
        "speaker": np.array([c.speaker for c in clips], dtype=np.int64),
        "mnist_index": used,
        "fsdd_file": np.array([c.path.name for c in clips]),
    }


# --------------------------------------------------------------------------- training material

MATERIAL_KEYS = ("fsdd_audio", "fsdd_offsets", "fsdd_digit", "fsdd_speaker", "fsdd_take", "fsdd_file", "mnist_image", "mnist_label")


def training_material(clips, mnist_images, mnist_labels) -> dict:
    """The raw training material in one array file: every training-take recording (int16, as
    recorded, concatenated) and the MNIST training images (0-7999). Evaluation takes and images stay out."""
    import soundfile as sf

    train = [c for c in clips if c.take in TRAIN_TAKES]
    waves = [sf.read(str(c.path), dtype="int16", always_2d=False)[0] for c in train]
    idx = np.array(list(MNIST_TRAIN))
    return {
        "fsdd_audio": np.concatenate(waves).astype(np.int16),
        "fsdd_offsets": np.cumsum([0] + [len(w) for w in waves]).astype(np.int64),
        "fsdd_digit": np.array([c.digit for c in train], dtype=np.int64),
        "fsdd_speaker": np.array([c.speaker for c in train], dtype=np.int64),
        "fsdd_take": np.array([c.take for c in train], dtype=np.int64),
        "fsdd_file": np.array([c.path.name for c in train]),
        "mnist_image": mnist_images[idx],
        "mnist_label": mnist_labels[idx].astype(np.int64),
    }


def training_pairs(path, renders: int = 4, seed: int = 100) -> dict:
    """The avnet recipe's training split: every training take rendered ``renders`` times (fresh frame,
    noise, offset and corruption each time; seeds ``seed``, ``seed + 1``, ...) from the shipped
    training material (``calibration_data/avmnist/train-material.npz``, see :func:`training_material`).

    Returns arrays in the sample-file format (``image``, ``audio``, ``audio.sample_rate``, labels).
    4 renders = 9,600 pairs: fine-tuning a 50 %-pruned avnet on them (15 epochs) keeps digit top-1
    within 0.2 points of the original on average, against ~1.0 with the 1,200 pairs of train.npz
    (benchmarks/results/prune-accuracy-2026-12-03.json)."""
    if not isinstance(renders, int) or isinstance(renders, bool) or renders < 1:
        raise ValueError(f"renders must be a whole number >= 1, not {renders!r}")
    from ..errors import SpecError
    from ..safeio import read_npz

    m = read_npz(path, "avmnist training material", names=MATERIAL_KEYS, allowed_kinds=("f", "i", "u", "b", "U"),
                 error=SpecError, fix="rebuild it with scripts/build_avmnist.py --only material")
    missing = [k for k in MATERIAL_KEYS if k not in m]
    if missing:
        raise ValueError(f"{path} is not avmnist training material (lacks {', '.join(missing)}); rebuild it with scripts/build_avmnist.py --only material")
    offsets = m["fsdd_offsets"]
    clips = [Clip(int(d), int(s), int(t), Path(str(n))) for d, s, t, n in zip(m["fsdd_digit"], m["fsdd_speaker"], m["fsdd_take"], m["fsdd_file"])]
    waves = {c.path.name: m["fsdd_audio"][offsets[i]:offsets[i + 1]].astype(np.float32) / 32768.0 for i, c in enumerate(clips)}
    images = np.zeros((10000, 28, 28), dtype=np.uint8)  # indexed like the MNIST test set; only 0-7999 are present
    labels = np.full(10000, -1, dtype=np.int64)
    images[:len(m["mnist_image"])], labels[:len(m["mnist_label"])] = m["mnist_image"], m["mnist_label"]
    parts = [make_pairs(clips, images, labels, list(MNIST_TRAIN), np.random.default_rng(seed + r), read=lambda c: waves[c.path.name])
             for r in range(renders)]
    return {k: (np.concatenate([p[k] for p in parts]) if np.ndim(parts[0][k]) else parts[0][k]) for k in parts[0]}
