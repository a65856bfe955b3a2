#!/usr/bin/env python3
"""Per channel group of the shipped avnet: what pruning it costs in accuracy and what keeping it costs in latency.

    python benchmarks/bench_prune_groups.py [--prune 0.5] [--rounds 40] [--threads 2]

The manual form of a latency-aware allocation: it tells which groups to name in ``--prune-keep``.
For every channel group that ``--prune RATIO`` would narrow (reports/pruning.json's ``groups``):

- ``alone``: only this group pruned at RATIO (every other group kept), no fine-tuning: top-1 per head on
  the training split (calibration_data/avmnist/train.npz; the evaluation split is not used to choose);
- ``kept``: RATIO everywhere except this group, no fine-tuning, exported with ``edgemm.export`` (ONNX +
  OpenVINO IR) and timed batch 1 beside the unpruned model and the uniformly pruned one. All models are
  loaded in this one process; per backend, ``--rounds`` rounds visit every model in a shuffled order,
  ``--iters`` calls each. ``speedup`` is the median over rounds of unpruned block median / model block median
  (this VM's speed drifts over seconds; a round's blocks are neighbours).

Fine-tuning changes the accuracy a group costs, not the latency; ``alone`` ranks sensitivity only.
Writes benchmarks/results/prune-groups-<date>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

import edgemm
from edgemm.bench.machine import machine_info
from edgemm.data.datasets import load_samples
from edgemm.stages.prune import parse_prune, prune_model
from edgemm.stages.prune.finetune import evaluate
from edgemm.zoo import avnet

from bench_prune import _time  # noqa: E402  (this folder: the same timing loop)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "calibration_data" / "avmnist"
BACKENDS = ("onnxruntime", "openvino")


def _pruned(spec, ratio: str, keep: list[str], train):
    result = prune_model(avnet.build(), spec, parse_prune(ratio, spec.input_names, epochs=0, keep=keep), train, None,
                         progress=lambda _s: None)
    return result.module, result.report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prune", default="0.5", help="ratio (default 0.5)")
    ap.add_argument("--rounds", type=int, default=40, help="timing rounds per backend (default 40)")
    ap.add_argument("--iters", type=int, default=20, help="timed calls per model per round (default 20)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"prune-groups-{date.today()}.json")
    args = ap.parse_args()

    spec = avnet.iospec()
    train = load_samples(DATA / "train.npz", spec)
    evaluation = load_samples(DATA / "eval.npz", spec)
    base_acc = evaluate(avnet.build(), spec, train)
    uniform, report = _pruned(spec, args.prune, [], train)
    groups = [g for g in report["groups"] if g["ratio"] > 0]
    names = [g["modules"][0] for g in groups]  # a module of each group: keep=[it] keeps that group whole

    rows, models = [], {"unpruned": (avnet.build(), {}), "uniform": (uniform, report)}
    for g, name in zip(groups, names):
        others = [n for n in names if n != name]
        alone, _ = _pruned(spec, args.prune, others, train)
        kept, kept_report = _pruned(spec, args.prune, [name], train)
        models[name] = (kept, kept_report)
        rows.append({"group": name, "branch": g["branch"], "modules": g["modules"], "channels": g["channels"],
                     "alone_train_top1": evaluate(alone, spec, train),
                     "kept_params": kept_report["params"]["after"], "kept_flops": kept_report["flops"]["after"]})
        print(f"group {name} ({g['channels']} ch): pruned alone, train top-1 "
              + ", ".join(f"{h} {base_acc[h]:.3f}->{v:.3f}" for h, v in rows[-1]["alone_train_top1"].items()), flush=True)

    feed = {k: v[:1] for k, v in evaluation.feeds.items()}
    blocks: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = {}
        for key, (module, _) in models.items():
            bundle = edgemm.export(module, spec=spec, output=Path(tmp) / key.replace(".", "_"), targets=list(BACKENDS), name="avnet")
            for b in BACKENDS:
                runtimes[(b, key)] = edgemm.load(bundle.root, backend=b, precision="fp32", threads=args.threads)
        rng = np.random.default_rng(0)
        for b in BACKENDS:
            for _ in range(args.rounds):
                for key in rng.permutation(list(models)):
                    blocks.setdefault((b, key), []).append(float(np.median(_time(runtimes[(b, key)], feed, args.iters))))
        for rt in runtimes.values():
            rt.close()

    def speedup(b, key):
        return float(np.median(np.array(blocks[(b, "unpruned")]) / np.array(blocks[(b, key)])))

    latency = {key: {b: {"median_ms": float(np.median(blocks[(b, key)])), "speedup": speedup(b, key)} for b in BACKENDS} for key in models}
    for row in rows:
        row["kept_latency"] = latency[row["group"]]
    out = {
        "command": "python benchmarks/bench_prune_groups.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(), "prune": args.prune, "batch": 1, "threads": args.threads,
        "order": f"per backend {args.rounds} rounds; each round every model once in a shuffled order, {args.iters} calls each",
        "train_top1_unpruned": base_acc, "unpruned": latency["unpruned"], "uniform": latency["uniform"], "groups": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    u = latency["uniform"]
    print(f"\nuniform {args.prune}: " + ", ".join(f"{b} {u[b]['speedup']:.2f}x" for b in BACKENDS))
    print(f"{'group (kept)':22s} {'ch':>4s} {'MFLOP':>6s} " + " ".join(f"{b:>12s}" for b in BACKENDS) + "  pruned alone (train top-1)")
    for r in rows:
        print(f"{r['group']:22s} {r['channels']:4d} {r['kept_flops'] / 1e6:6.1f} "
              + " ".join(f"{r['kept_latency'][b]['speedup']:11.2f}x" for b in BACKENDS) + "  "
              + ", ".join(f"{h} {v:.3f}" for h, v in r["alone_train_top1"].items()))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
