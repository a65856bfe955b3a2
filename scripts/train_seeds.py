#!/usr/bin/env python3
"""Train the seed models of edgemm.zoo.seeds on the shipped AV-MNIST-style data (CPU, one thread, deterministic).

    python scripts/train_seeds.py --data-only                 # build export/seeds/{eval,calib}.npz + tokenizers
    python scripts/train_seeds.py --model seed_text_image     # train one model (or --model all), save, evaluate
    python scripts/train_seeds.py --eval-only --model all     # evaluate the shipped checkpoints
    python scripts/train_seeds.py --results benchmarks/results/seeds-2026-12-05.json --out build/seeds
                                                              # export every recipe --int8, collect the eval metrics

Training material: calibration_data/avmnist/train-material.npz (FSDD takes 0-39, MNIST 0-7999), rendered
``--renders`` times by edgemm.zoo.avmnist.training_pairs (fresh frames, noise and corruption per render), with
captions, prompts and speech durations added (edgemm.zoo.seeds.data). Evaluation: export/seeds/eval.npz (the 600
pairs of calibration_data/avmnist/eval.npz: FSDD takes 40-49, MNIST 8000-9999, never trained on).
Each model trains in a few minutes on one core; its eval metrics land in edgemm/zoo/checkpoints/<model>.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgemm.zoo.seeds import SEEDS, av_text, captions, data, dual_encoder, multitask, text_image, zero_shot
from edgemm.zoo.seeds.blocks import save_weights

ROOT = Path(__file__).resolve().parents[1]
SEED_DIR = ROOT / "export" / "seeds"
AVMNIST = ROOT / "calibration_data" / "avmnist"
MODULES = {"seed_text_image": text_image, "seed_multitask": multitask, "seed_av_text": av_text, "seed_dual_encoder": dual_encoder}
EPOCHS = {"seed_text_image": 14, "seed_multitask": 12, "seed_av_text": 8, "seed_dual_encoder": 10}


def build_data(recordings: Path) -> None:
    SEED_DIR.mkdir(parents=True, exist_ok=True)
    for name, tok in (("seed_text_image", captions.caption_tokenizer()), ("seed_av_text", captions.caption_tokenizer()),
                      ("seed_dual_encoder", captions.prompt_tokenizer())):
        tok.save(str(SEED_DIR / f"{name}.tokenizer.json"))
    for split, rows, seed in (("eval", None, 7040), ("calib", data.CALIB_ROWS, 7041)):
        arrays = data.build_split(AVMNIST / f"{split}.npz", recordings, seed, rows)
        path = SEED_DIR / f"{split}.npz"
        np.savez_compressed(path, **arrays)
        print(f"{path}: {len(arrays['digit'])} rows, {path.stat().st_size / 1e6:.1f} MB", flush=True)


def tensors(split: dict) -> dict[str, torch.Tensor]:
    f = data.features(split)
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in f.items()}
    out["digit"] = torch.from_numpy(np.asarray(split["digit"], np.int64))
    out["duration"] = torch.from_numpy(np.asarray(split["duration"], np.float32))
    return out


def neutral(t: dict[str, torch.Tensor]) -> torch.Tensor:
    """Captions that say nothing: what the image (and speech) alone give."""
    ids = captions.encode(captions.caption_tokenizer(), captions.neutral_captions(len(t["digit"])))
    return torch.from_numpy(ids)


def step_loss(name: str, model, b: dict[str, torch.Tensor]) -> torch.Tensor:
    if name == "seed_text_image":
        return F.cross_entropy(model(b["image"], b["caption"]), b["digit"], label_smoothing=0.05)
    if name == "seed_av_text":
        return F.cross_entropy(model(b["image"], b["audio"], b["caption"]), b["digit"], label_smoothing=0.05)
    if name == "seed_multitask":
        logits, dur = model(b["audio"])
        return (F.cross_entropy(logits, b["digit"], label_smoothing=0.05)
                + F.smooth_l1_loss((dur.squeeze(1) - multitask.DURATION_MEAN) / multitask.DURATION_SCALE,
                                   (b["duration"] - multitask.DURATION_MEAN) / multitask.DURATION_SCALE, beta=0.5))
    # dual encoder: CLIP loss with every same-digit pair a positive (a batch holds many of each digit)
    img, txt = model.image(b["image"]), model.text(b["prompt"])
    logits = img @ txt.T * model.log_scale.clamp(max=4.6).exp()
    same = (b["digit"][:, None] == b["digit"][None, :]).float()
    target = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


@torch.no_grad()
def evaluate(name: str, model, t: dict[str, torch.Tensor]) -> dict:
    model.eval()
    y = t["digit"]
    acc = lambda logits: float((logits.argmax(1) == y).float().mean())  # noqa: E731
    if name == "seed_text_image":
        return {"digit_top1": acc(model(t["image"], t["caption"])),
                "digit_top1_neutral_caption": acc(model(t["image"], neutral(t)))}
    if name == "seed_av_text":
        w = model.modality_weights(t["image"], t["audio"], t["caption"]).mean(0)
        return {"digit_top1": acc(model(t["image"], t["audio"], t["caption"])),
                "digit_top1_neutral_caption": acc(model(t["image"], t["audio"], neutral(t))),
                "digit_top1_no_audio": acc(model(t["image"], torch.full_like(t["audio"], float(np.log(1e-6))), t["caption"])),
                "mean_weights_image_audio_caption": [round(float(v), 3) for v in w]}
    if name == "seed_multitask":
        logits, dur = model(t["audio"])
        err = dur.squeeze(1) - t["duration"]
        return {"digit_top1": acc(logits), "duration_mae_s": float(err.abs().mean()),
                "duration_rmse_s": float(err.pow(2).mean().sqrt()),
                "duration_mae_predict_mean_s": float((t["duration"] - t["duration"].mean()).abs().mean())}
    classes = zero_shot.class_embeddings(lambda ids: model.text(torch.from_numpy(ids)).numpy(), captions.prompt_tokenizer())
    return {"zero_shot_top1": zero_shot.top1(model.image(t["image"]).numpy(), classes, y.numpy())}


def train(name: str, train_t: dict[str, torch.Tensor], eval_t: dict[str, torch.Tensor], epochs: int, batch: int,
          lr: float, seed: int) -> dict:
    torch.manual_seed(seed)
    model = {"seed_text_image": text_image.TextImageNet, "seed_multitask": multitask.MultitaskNet,
             "seed_av_text": av_text.AVTextNet, "seed_dual_encoder": dual_encoder.DualEncoder}[name]()
    n = len(train_t["digit"])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    steps = epochs * ((n + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    gen = torch.Generator().manual_seed(seed)
    t_start = time.time()
    for epoch in range(epochs):
        model.train()
        t0, total = time.time(), 0.0
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            loss = step_loss(name, model, {k: v[idx] for k, v in train_t.items()})
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"{name} epoch {epoch + 1}/{epochs}: loss {total / n:.4f} ({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    save_weights(model, MODULES[name].CHECKPOINT)
    metrics = evaluate(name, model, eval_t)
    report = {"eval": {**metrics, "samples": int(len(eval_t["digit"])), "split": "export/seeds/eval.npz"},
              "epochs": epochs, "train_pairs": n, "seed": seed, "train_seconds": round(time.time() - t_start, 1),
              "parameters": sum(p.numel() for p in model.parameters())}
    MODULES[name].CHECKPOINT.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def export_results(names, out_dir: Path, results: Path, targets) -> None:
    """Export each seed recipe with --int8 through the pipeline and write the eval metrics of every artifact."""
    import subprocess
    import sys

    rows = {}
    for name in names:
        bundle = out_dir / name
        recipe = ROOT / "export" / f"{name}.toml"
        if name == "seed_dual_encoder":
            cmd = [sys.executable, "-m", "edgemm.zoo.seeds.dual_bundle", str(recipe.relative_to(ROOT)), "-o", str(bundle),
                   "--int8", "--target", targets, "--json", str(bundle.with_suffix(".zero_shot.json"))]
        else:
            cmd = [sys.executable, "-m", "edgemm", "export", str(recipe.relative_to(ROOT)), "-o", str(bundle), "--int8",
                   "--target", targets]
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        print(f"{name}: exit {proc.returncode} ({time.time() - t0:.0f}s)", flush=True)
        row = {"command": " ".join(["python" if c == sys.executable else c for c in cmd]), "exit": proc.returncode,
               "export_seconds": round(time.time() - t0, 1)}
        if proc.returncode != 0:
            row["stderr_tail"] = proc.stderr[-2000:]
        elif name == "seed_dual_encoder":
            row["zero_shot"] = json.loads(bundle.with_suffix(".zero_shot.json").read_text())
        else:
            acc = json.loads((bundle / "reports" / "accuracy.json").read_text())
            row["reference"] = acc["reference"]["metrics"]
            row["artifacts"] = {aid: {k: a[k] for k in ("backend", "precision", "method", "metrics", "drop")}
                                for aid, a in acc["artifacts"].items()}
        row["trained"] = json.loads(MODULES[name].CHECKPOINT.with_suffix(".json").read_text())
        rows[name] = row
    report = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"), "split": "export/seeds/eval.npz (600 pairs: FSDD takes 40-49, MNIST 8000-9999)",
              "chance_top1": 0.1, "budgets": {"top1": "1.0 point", "regression_mae": "5 % relative", "zero_shot_top1": "1.0 point"},
              "models": rows}
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all", choices=("all", *SEEDS))
    ap.add_argument("--recordings", type=Path, default=ROOT.parent / "shared" / "data" / "fsdd" / "recordings",
                    help="the FSDD recordings (durations of the evaluation takes; --data-only)")
    ap.add_argument("--data-only", action="store_true", help="build export/seeds/{eval,calib}.npz and the tokenizers, then stop")
    ap.add_argument("--eval-only", action="store_true", help="evaluate the shipped checkpoints")
    ap.add_argument("--renders", type=int, default=3, help="renders of every training take (2,400 pairs each)")
    ap.add_argument("--epochs", type=int, default=None, help="default: per model (EPOCHS)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep the rendered training features in this .npz (read it when it exists: same renders and seed)")
    ap.add_argument("--results", type=Path, default=None, help="export every recipe --int8 and write the metrics here")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "seeds", help="bundles of --results")
    ap.add_argument("--targets", default="onnxruntime,openvino", help="targets of --results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.results:
        export_results(SEEDS if args.model == "all" else (args.model,), args.out, args.results, args.targets)
        return
    if args.data_only:
        build_data(args.recordings)
        return
    names = SEEDS if args.model == "all" else (args.model,)
    eval_t = tensors(dict(np.load(SEED_DIR / "eval.npz")))
    if args.eval_only:
        for name in names:
            print(name, json.dumps(evaluate(name, MODULES[name].build(), eval_t)), flush=True)
        return
    t0 = time.time()
    if args.cache and args.cache.is_file():
        train_t = {k: torch.from_numpy(v) for k, v in np.load(args.cache).items()}
    else:
        train_t = tensors(data.training_set(AVMNIST / "train-material.npz", args.renders, 100 + args.seed))
        if args.cache:
            np.savez(args.cache, **{k: v.numpy() for k, v in train_t.items()})
    print(f"training set: {len(train_t['digit'])} pairs ({time.time() - t0:.0f}s)", flush=True)
    for name in names:
        report = train(name, train_t, eval_t, args.epochs or EPOCHS[name], args.batch, args.lr, args.seed)
        print(name, json.dumps(report["eval"]), flush=True)


if __name__ == "__main__":
    main()
