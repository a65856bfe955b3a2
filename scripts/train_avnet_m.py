#!/usr/bin/env python3
"""Train the realistic-size reference model ``avnet_m`` on the AV-MNIST-style training split (CPU, ~20 min of one core).

    python scripts/train_avnet_m.py                     # train from calibration_data/avmnist/train-material.npz, save, evaluate
    python scripts/train_avnet_m.py --eval-only         # evaluate the shipped checkpoint

Training material: the shipped raw training split (FSDD takes 0-39, MNIST test-set images 0-7999, in
calibration_data/avmnist/train-material.npz), re-paired and re-rendered every epoch with the renderer that
built calibration_data/ (64x64 frames, resized to the model's 160x160 input by its own pre-processing, as
every evaluation and camera frame is). Evaluation: calibration_data/avmnist/eval.npz (FSDD takes 40-49, MNIST
8000-9999), fused, image-only (audio silenced) and audio-only (frame blanked), with the weights as shipped
(fp16, loaded as fp32).

Deterministic: fixed seeds and a fixed thread count (--threads, default 1) give the same checkpoint on the
same machine and library versions.
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
from edgemm.zoo import avmnist, avnet_m

ROOT = Path(__file__).resolve().parents[1]
MATERIAL = ROOT / "calibration_data" / "avmnist" / "train-material.npz"
EVAL = ROOT / "calibration_data" / "avmnist" / "eval.npz"


def features(frames: np.ndarray, waves: np.ndarray, rate: int):
    return (
        torch.from_numpy(preprocess_image(frames, avnet_m.IMAGE_PRE)),
        torch.from_numpy(preprocess_audio(waves, rate, avnet_m.AUDIO_PRE)),
    )


@torch.no_grad()
def evaluate(model, split: Path, batch: int = 100) -> dict:
    d = dict(np.load(split))
    rate = int(d["audio.sample_rate"])
    frames, waves = d["image"], d["audio"]
    digit, speaker = torch.from_numpy(d["digit"]), torch.from_numpy(d["speaker"])
    out = {}
    for name, (f, w) in {
        "fused": (frames, waves),
        "image_only": (frames, np.zeros_like(waves)),
        "audio_only": (np.zeros_like(frames), waves),
    }.items():
        dls, sls = [], []
        for s in range(0, len(digit), batch):
            img, aud = features(f[s:s + batch], w[s:s + batch], rate)
            dl, sl = model(img, aud)
            dls.append(dl)
            sls.append(sl)
        dl, sl = torch.cat(dls), torch.cat(sls)
        out[f"digit_top1_{name}"] = float((dl.argmax(1) == digit).float().mean())
        if name == "fused":
            out["speaker_top1"] = float((sl.argmax(1) == speaker).float().mean())
    out["samples"] = int(len(digit))
    return out


def read_material(path: Path):
    m = dict(np.load(path))  # an NpzFile re-reads an array on every m[key]
    offsets, audio = m["fsdd_offsets"], m["fsdd_audio"]
    raw = [audio[offsets[i]:offsets[i + 1]].astype(np.float32) / 32768.0 for i in range(len(offsets) - 1)]
    return raw, m["fsdd_digit"], m["fsdd_speaker"], m["mnist_image"], m["mnist_label"]


def save_fp16(model, path: Path) -> None:
    """Float weights stored as fp16 (half the file; avnet_m.build loads them as fp32)."""
    state = {k: (v.half() if torch.is_floating_point(v) else v) for k, v in model.state_dict().items()}
    torch.save({"model": state}, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--material", type=Path, default=MATERIAL)
    ap.add_argument("--eval-split", type=Path, default=EVAL)
    ap.add_argument("--out", type=Path, default=avnet_m.CHECKPOINT)
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--audio-variants", type=int, default=3, help="noisy renderings of each training clip")
    ap.add_argument("--modality-dropout", type=float, default=0.15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=0, help="evaluate every N epochs (0: only at the end)")
    ap.add_argument("--aux-weight", type=float, default=0.5,
                    help="weight of training-only digit heads on each branch's pooled tokens (0: off): they give the image "
                         "branch its own gradient, which the fused loss alone starves while audio is the easier cue")
    ap.add_argument("--init", type=Path, help="start from these weights (a further training phase) instead of random ones")
    ap.add_argument("--eval-only", action="store_true", help="only evaluate the checkpoint at --out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.eval_only:
        print(json.dumps(evaluate(avnet_m.build(args.out), args.eval_split), indent=2))
        return

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    raw, digit, speaker, images, labels = read_material(args.material)
    mnist_by_digit = {d: np.nonzero(labels == d)[0] for d in range(10)}
    n = len(raw)
    print(f"training on {n} clips x {args.audio_variants} audio renderings, {len(images)} MNIST images", flush=True)

    t0 = time.time()
    audio_pool = []  # [variant] -> ([n, 1, mels, frames] features, silenced mask)
    for _ in range(args.audio_variants):
        corrupt = rng.random(n) < 0.2
        waves = np.stack([avmnist.place_audio(x, rng, bool(c)) for x, c in zip(raw, corrupt)])
        silence = rng.random(n) < args.modality_dropout
        waves[silence] = 0
        audio_pool.append((preprocess_audio(waves, avmnist.FSDD_RATE, avnet_m.AUDIO_PRE), silence))
    print(f"audio features ready in {time.time() - t0:.0f}s", flush=True)

    model = (avnet_m.build(args.init).train() if args.init else avnet_m.AVNetM()).to(memory_format=torch.channels_last)  # NHWC: ~20 % less CPU per step
    # Training-only heads (not part of the shipped model): digit logits from each branch's pooled tokens.
    aux = torch.nn.ModuleDict({"image": torch.nn.Linear(128, 10), "audio": torch.nn.Linear(128, 10)})
    branch_out = {}
    for name in aux:
        getattr(model, name).register_forward_hook(lambda mod, inp, out, name=name: branch_out.__setitem__(name, out))
    opt = torch.optim.AdamW([*model.parameters(), *aux.parameters()], lr=args.lr, weight_decay=1e-2)
    steps = args.epochs * ((n + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    y_digit, y_speaker = torch.from_numpy(digit), torch.from_numpy(speaker)
    history = []
    for epoch in range(args.epochs):
        model.train()
        t0, c0 = time.time(), time.process_time()
        feats, silenced = audio_pool[epoch % args.audio_variants]
        corrupt = rng.random(n) < 0.2
        frames = np.stack([
            avmnist.render_frame(images[rng.choice(mnist_by_digit[d])], rng, bool(c)) for d, c in zip(digit, corrupt)
        ])
        blank_img = (rng.random(n) < args.modality_dropout) & ~silenced
        frames[blank_img] = 0
        aud_all = torch.from_numpy(feats)
        order = rng.permutation(n)
        total = 0.0
        for s in range(0, n, args.batch):
            idx = order[s:s + args.batch]
            img = torch.from_numpy(preprocess_image(frames[idx], avnet_m.IMAGE_PRE)).contiguous(memory_format=torch.channels_last)
            dl, sl = model(img, aud_all[idx].contiguous(memory_format=torch.channels_last))
            keep = ~torch.from_numpy(silenced[idx])  # speaker is unknowable from silence
            loss = F.cross_entropy(dl, y_digit[idx], label_smoothing=0.05)
            if keep.any():
                loss = loss + F.cross_entropy(sl[keep], y_speaker[idx][keep], label_smoothing=0.05)
            if args.aux_weight:
                for name, present in (("image", ~torch.from_numpy(blank_img[idx])), ("audio", keep)):
                    if present.any():
                        logits = aux[name](branch_out[name].mean(1))[present]
                        loss = loss + args.aux_weight * F.cross_entropy(logits, y_digit[idx][present], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        line = f"epoch {epoch + 1}/{args.epochs}: loss {total / n:.3f} ({time.time() - t0:.0f}s, cpu {time.process_time() - c0:.0f}s)"
        if args.eval_every and (epoch + 1) % args.eval_every == 0 and epoch + 1 < args.epochs:
            model.eval()
            m = evaluate(model, args.eval_split)
            history.append({"epoch": epoch + 1, **m})
            line += f" eval digit {m['digit_top1_fused']:.3f} speaker {m['speaker_top1']:.3f}"
        print(line, flush=True)

    model.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_fp16(model, args.out)
    metrics = evaluate(avnet_m.build(args.out), args.eval_split)  # the weights as shipped (fp16 -> fp32)
    info = {"eval": metrics, "epochs": args.epochs, "seed": args.seed, "threads": args.threads, "lr": args.lr,
            "aux_weight": args.aux_weight,
            "init": str(args.init) if args.init else None, "history": history}
    args.out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
