#!/usr/bin/env python3
"""Train the reference model ``avnet`` on the AV-MNIST-style training split (CPU, a few minutes).

    python scripts/train_avnet.py --data ../shared/data            # train, save, evaluate
    python scripts/train_avnet.py --eval-only                      # evaluate the shipped checkpoint

Training material: FSDD takes 0-39 (all speakers, digits) and MNIST test-set images 0-7999,
re-paired and re-rendered every epoch with the same renderer that built calibration_data/.
Evaluation: the shipped split calibration_data/avmnist/eval.npz (FSDD takes 40-49, MNIST
8000-9999), reported fused, image-only (audio silenced) and audio-only (frame blanked).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgemm.frontends.audio import preprocess_audio
from edgemm.frontends.image import preprocess_image
from edgemm.zoo import avmnist, avnet

ROOT = Path(__file__).resolve().parents[1]


def features(frames: np.ndarray, waves: np.ndarray, rate: int):
    return (
        torch.from_numpy(preprocess_image(frames, avnet.IMAGE_PRE)),
        torch.from_numpy(preprocess_audio(waves, rate, avnet.AUDIO_PRE)),
    )


def blank(frames=None, waves=None):
    """What a missing modality looks like at run time: a black frame / silence."""
    return (np.zeros_like(frames) if frames is not None else None), (np.zeros_like(waves) if waves is not None else None)


@torch.no_grad()
def evaluate(model, split: Path) -> dict:
    d = np.load(split)
    rate = int(d["audio.sample_rate"])
    frames, waves = d["image"], d["audio"]
    digit, speaker = torch.from_numpy(d["digit"]), torch.from_numpy(d["speaker"])
    out = {}
    for name, (f, w) in {
        "fused": (frames, waves),
        "image_only": (frames, np.zeros_like(waves)),
        "audio_only": (np.zeros_like(frames), waves),
    }.items():
        img, aud = features(f, w, rate)
        dl, sl = model(img, aud)
        out[f"digit_top1_{name}"] = float((dl.argmax(1) == digit).float().mean())
        if name == "fused":
            out["speaker_top1"] = float((sl.argmax(1) == speaker).float().mean())
    out["samples"] = int(len(digit))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="folder with fsdd/ and mnist/")
    ap.add_argument("--eval-split", type=Path, default=ROOT / "calibration_data" / "avmnist" / "eval.npz")
    ap.add_argument("--out", type=Path, default=avnet.CHECKPOINT)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--audio-variants", type=int, default=4, help="noisy renderings of each training clip")
    ap.add_argument("--modality-dropout", type=float, default=0.15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-only", action="store_true", help="only evaluate the checkpoint at --out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.eval_only:
        print(json.dumps(evaluate(avnet.build(args.out), args.eval_split), indent=2))
        return

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    images, labels = avmnist.read_mnist(args.data / "mnist")
    clips = [c for c in avmnist.list_fsdd(args.data / "fsdd" / "recordings") if c.take in avmnist.TRAIN_TAKES]
    raw = [avmnist.read_clip(c.path) for c in clips]
    digit = np.array([c.digit for c in clips])
    speaker = np.array([c.speaker for c in clips])
    mnist_by_digit = {d: [i for i in avmnist.MNIST_TRAIN if labels[i] == d] for d in range(10)}
    n = len(clips)
    print(f"training on {n} clips x {args.audio_variants} audio renderings, MNIST images 0-7999", flush=True)

    t0 = time.time()
    audio_pool = []  # [variant] -> [n, 1, mels, frames] features
    for v in range(args.audio_variants):
        corrupt = rng.random(n) < 0.2
        waves = np.stack([avmnist.place_audio(x, rng, bool(c)) for x, c in zip(raw, corrupt)])
        silence = rng.random(n) < args.modality_dropout
        waves[silence] = 0
        audio_pool.append((preprocess_audio(waves, avmnist.FSDD_RATE, avnet.AUDIO_PRE), silence))
    print(f"audio features ready in {time.time() - t0:.0f}s", flush=True)

    model = avnet.AVNet()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    steps = args.epochs * ((n + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    for epoch in range(args.epochs):
        model.train()
        t0 = time.time()
        feats, silenced = audio_pool[epoch % args.audio_variants]
        corrupt = rng.random(n) < 0.2
        frames = np.stack([
            avmnist.render_frame(images[rng.choice(mnist_by_digit[d])], rng, bool(c)) for d, c in zip(digit, corrupt)
        ])
        blank_img = (rng.random(n) < args.modality_dropout) & ~silenced
        frames[blank_img] = 0
        img_all = torch.from_numpy(preprocess_image(frames, avnet.IMAGE_PRE))
        aud_all = torch.from_numpy(feats)
        order = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for s in range(0, n, args.batch):
            idx = order[s:s + args.batch]
            dl, sl = model(img_all[idx], aud_all[idx])
            y_d = torch.from_numpy(digit)[idx]
            y_s = torch.from_numpy(speaker)[idx]
            keep = ~torch.from_numpy(silenced)[idx]  # speaker is unknowable from silence
            loss = F.cross_entropy(dl, y_d, label_smoothing=0.05)
            if keep.any():
                loss = loss + F.cross_entropy(sl[keep], y_s[keep], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / n:.3f} ({time.time() - t0:.0f}s)", flush=True)

    model.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, args.out)
    metrics = evaluate(model, args.eval_split)
    args.out.with_suffix(".json").write_text(json.dumps({"eval": metrics, "epochs": args.epochs, "seed": args.seed}, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
