#!/usr/bin/env python3
"""Rebuild calibration_data/avmnist/{calib,eval,train,train-material}.npz from the original FSDD and MNIST files.

    python scripts/build_avmnist.py --data ../shared/data --out calibration_data/avmnist

Deterministic (fixed seeds). eval: all 600 FSDD evaluation takes (40-49), each paired with a
distinct MNIST evaluation image (index 8000-9999) of the same digit. calib: 300 pairs from the
training material (takes 0-39, MNIST 0-7999), 5 per speaker and digit. train: 1,200 pairs from the
same training material, 20 per speaker and digit (the fine-tuning split of pruning and QAT: recipes'
[data] training in other recipes). train-material: the raw training material (every training-take
recording as recorded, MNIST 0-7999) that the avnet recipe's [data.training] generator,
edgemm.zoo.avmnist:training_pairs, renders its 9,600-pair fine-tuning split from.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgemm.zoo import avmnist


def _per_class(clips, n: int, rng) -> list:
    """``n`` training-take clips per (speaker, digit), drawn without replacement."""
    out = []
    for spk in range(len(avmnist.SPEAKERS)):
        for d in range(10):
            pool = [c for c in clips if c.take in avmnist.TRAIN_TAKES and c.speaker == spk and c.digit == d]
            out += [pool[i] for i in rng.choice(len(pool), n, replace=False)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder with fsdd/ and mnist/")
    ap.add_argument("--out", type=Path, default=Path("calibration_data/avmnist"))
    ap.add_argument("--calib-per-class", type=int, default=5, help="calibration pairs per (speaker, digit)")
    ap.add_argument("--train-per-class", type=int, default=20, help="training pairs per (speaker, digit)")
    ap.add_argument("--only", choices=("eval", "calib", "train", "material"), action="append", help="build only these splits")
    args = ap.parse_args()

    images, labels = avmnist.read_mnist(args.data / "mnist")
    clips = avmnist.list_fsdd(args.data / "fsdd" / "recordings")
    if len(clips) != 3000:
        raise SystemExit(f"expected 3000 FSDD recordings under {args.data}/fsdd/recordings, found {len(clips)}")
    args.out.mkdir(parents=True, exist_ok=True)

    eval_clips = [c for c in clips if c.take in avmnist.EVAL_TAKES]
    calib_clips = _per_class(clips, args.calib_per_class, np.random.default_rng(2026_11_22))
    train_clips = _per_class(clips, args.train_per_class, np.random.default_rng(2026_11_30))

    for name, subset, indices, seed in (
        ("eval", eval_clips, avmnist.MNIST_EVAL, 40),
        ("calib", calib_clips, avmnist.MNIST_TRAIN, 41),
        ("train", train_clips, avmnist.MNIST_TRAIN, 42),
    ):
        if args.only and name not in args.only:
            continue
        data = avmnist.make_pairs(subset, images, labels, list(indices), np.random.default_rng(seed))
        path = args.out / f"{name}.npz"
        np.savez_compressed(path, **data)
        print(f"{path}: {len(subset)} pairs, {path.stat().st_size / 1e6:.1f} MB")
    if not args.only or "material" in args.only:
        material = avmnist.training_material(clips, images, labels)
        path = args.out / "train-material.npz"
        np.savez_compressed(path, **material)
        print(f"{path}: {len(material['fsdd_file'])} recordings, {len(material['mnist_label'])} images, {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
