#!/usr/bin/env python3
"""Structured pruning on the shipped avnet: latency (batch 1, 2 threads) and accuracy, unpruned vs pruned.

    python benchmarks/bench_prune.py [--prune 0.5] [--heads remove|narrow] [--epochs N] [--rounds 9] [--threads 2]

``--epochs 0`` times the pruned architecture without fine-tuning (latency does not depend on the weights'
values; the accuracy figures are then the un-fine-tuned ones).

Builds avnet from export/avnet.toml's factory, prunes it with edgemm's prune stage (fine-tuned with
distillation on the recipe's training split, [data.training]: 9,600 pairs rendered from
calibration_data/avmnist/train-material.npz; ``--train FILE.npz`` for a sample file; evaluated on eval.npz,
which fine-tuning never sees), exports the unpruned and the pruned module with ``edgemm.export`` (ONNX + OpenVINO IR), then
times all four artifacts in this one process (all four loaded), batch 1, backend by backend; within a backend the
unpruned and the pruned model alternate in short blocks (``--rounds`` x ``--iters`` calls each, the first of each
pair alternating). This VM's speed drifts by up to 2x over seconds, so every block is paired with its neighbour:
``speedup`` is the median of the per-round ratios (p10/p90 given), next to the ratio of the medians. Latency
medians and p90/p99 are over every timed call.
Top-1 of every head is measured on the eval split with the exported fp32 artifacts.
Writes benchmarks/results/prune-<date>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

import edgemm
from edgemm.bench.machine import machine_info
from edgemm.data.datasets import load_samples
from edgemm.data.generated import read_training, resolve_training
from edgemm.recipe import load_recipe
from edgemm.stages.prune import parse_prune, prune_model, pruning_report
from edgemm.zoo import avnet

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "calibration_data" / "avmnist"
ARTIFACT = {"onnxruntime": "onnx/model.fp32.onnx", "openvino": "openvino/model.fp32.xml"}


def _top1(rt, samples) -> dict[str, float]:
    correct = {h: 0 for h in samples.labels}
    for s in range(0, len(samples), 100):
        out = rt.run({k: v[s:s + 100] for k, v in samples.feeds.items()})
        for h in correct:
            correct[h] += int((out[h].argmax(-1) == samples.labels[h][s:s + 100]).sum())
    return {h: c / len(samples) for h, c in correct.items()}


def _cpu_flags() -> list[str]:
    """``grep -o -w -E 'avx512_vnni|avx_vnni|avx2' /proc/cpuinfo | sort -u``"""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return sorted(set(re.findall(r"\b(avx512_vnni|avx_vnni|avx2)\b", text)))


def _time(rt, feed, iters: int) -> list[float]:
    """``iters`` timed calls (ms) after 5 untimed ones."""
    for _ in range(5):
        rt.run(feed)
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        rt.run(feed)
        t.append((time.perf_counter() - t0) * 1e3)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prune", default="0.5", help="ratio, BRANCH=RATIO pairs (default 0.5: every modality branch)")
    ap.add_argument("--epochs", type=int, default=None, help="fine-tune epochs in total (default: the prune stage's default)")
    ap.add_argument("--steps", type=int, default=None, help="iterative prune -> fine-tune steps (default: the stage's)")
    ap.add_argument("--criterion", default="magnitude")
    ap.add_argument("--seed", type=int, default=None, help="fine-tune seed (default: the stage's, 0)")
    ap.add_argument("--keep", default="", help="module names whose channel groups keep their width (as --prune-keep), comma-separated")
    ap.add_argument("--heads", default="remove", choices=("remove", "narrow"), help="attention: remove whole heads or narrow each (default remove)")
    ap.add_argument("--train", type=Path, default=None, help="fine-tuning sample file (default: the recipe's [data] training)")
    ap.add_argument("--rounds", type=int, default=150, help="paired blocks per backend (default 150)")
    ap.add_argument("--iters", type=int, default=40, help="timed calls per artifact per block (default 40)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"prune-{date.today()}.json")
    args = ap.parse_args()
    load0 = list(os.getloadavg())

    spec = avnet.iospec()
    model = avnet.build()
    recipe = load_recipe(ROOT / "export" / "avnet.toml")
    train = load_samples(args.train, spec) if args.train else read_training(resolve_training(recipe.data.training, recipe.resolve), spec)
    evaluation = load_samples(DATA / "eval.npz", spec)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("iterative_steps", args.steps), ("seed", args.seed)) if v is not None}
    cfg = parse_prune(args.prune, spec.input_names, criterion=args.criterion, heads=args.heads, keep=args.keep, **overrides)
    t0 = time.monotonic()
    result = prune_model(model, spec, cfg, train, evaluation)
    prune_s = time.monotonic() - t0

    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        bundles = {}
        for kind, module in (("unpruned", model), ("pruned", result.module)):
            bundles[kind] = edgemm.export(module, spec=spec, output=Path(tmp) / kind, targets=["onnxruntime", "openvino"],
                                          evaluation=DATA / "eval.npz", name=f"avnet-{kind}")
        runtimes = {(b, k): edgemm.load(bundles[k].root, backend=b, precision="fp32", threads=args.threads)
                    for b in ARTIFACT for k in bundles}
        feed = {k: v[:1] for k, v in evaluation.feeds.items()}
        calls = {key: [] for key in runtimes}
        blocks = {key: [] for key in runtimes}
        for backend in ARTIFACT:
            for r in range(args.rounds):
                for kind in (("unpruned", "pruned") if r % 2 == 0 else ("pruned", "unpruned")):
                    t = _time(runtimes[(backend, kind)], feed, args.iters)
                    calls[(backend, kind)] += t
                    blocks[(backend, kind)].append(float(np.median(t)))
        for (backend, kind), rt in runtimes.items():
            ms = calls[(backend, kind)]
            size = (bundles[kind].root / ARTIFACT[backend]).stat().st_size
            if backend == "openvino":
                size += (bundles[kind].root / ARTIFACT[backend]).with_suffix(".bin").stat().st_size
            rows.setdefault(backend, {})[kind] = {
                "artifact": ARTIFACT[backend], "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
                "p99_ms": float(np.percentile(ms, 99)), "calls": len(ms), "block_medians_ms": [round(x, 4) for x in blocks[(backend, kind)]],
                "size_bytes": size, "top1": _top1(rt, evaluation)}
            rt.close()
    paired = {b: np.array(blocks[(b, "unpruned")]) / np.array(blocks[(b, "pruned")]) for b in ARTIFACT}
    latency = {b: {"before": v["unpruned"]["median_ms"], "after": v["pruned"]["median_ms"], "batch": 1, "threads": args.threads}
               for b, v in rows.items()}
    rep = result.report
    report = pruning_report(
        request=rep["request"], params=(rep["params"]["before"], rep["params"]["after"]),
        flops=(rep["flops"]["before"], rep["flops"]["after"]),
        size_bytes=(rows["onnxruntime"]["unpruned"]["size_bytes"], rows["onnxruntime"]["pruned"]["size_bytes"]),
        latency_ms=latency, accuracy={k: v for k, v in rep["accuracy"].items()},
        branches=rep["branches"], groups=rep["groups"], finetune=rep["finetune"])
    out = {
        "command": "python benchmarks/bench_prune.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(), "cpu_flags": _cpu_flags(), "loadavg_start": load0, "loadavg_end": list(os.getloadavg()),
        "order": f"backend by backend ({', '.join(ARTIFACT)}), all four loaded; per backend {args.rounds} rounds of "
                 f"unpruned/pruned blocks of {args.iters} calls (first of the pair alternating)",
        "prune_seconds": round(prune_s, 1), "artifacts": rows, "pruning": report,
        "target": {"speedup_min": 1.6, "digit_drop_max": 0.01},
        "verdict": {b: {"speedup": float(np.median(paired[b])), "speedup_p10": float(np.percentile(paired[b], 10)),
                        "speedup_p90": float(np.percentile(paired[b], 90)), "ratio_of_medians": latency[b]["before"] / latency[b]["after"],
                        "digit_drop": rows[b]["unpruned"]["top1"]["digit"] - rows[b]["pruned"]["top1"]["digit"]} for b in rows},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nparams {report['params']['before']:,} -> {report['params']['after']:,}, "
          f"FLOPs {report['flops']['before'] / 1e6:.1f} -> {report['flops']['after'] / 1e6:.1f} M, prune+fine-tune {prune_s:.0f} s")
    for b, v in rows.items():
        u, p = v["unpruned"], v["pruned"]
        v = out["verdict"][b]
        print(f"{b:12s} unpruned {u['median_ms']:.3f} ms (p90 {u['p90_ms']:.3f}, p99 {u['p99_ms']:.3f})  pruned {p['median_ms']:.3f} ms "
              f"(p90 {p['p90_ms']:.3f}, p99 {p['p99_ms']:.3f})  speedup {v['speedup']:.2f}x paired (p10 {v['speedup_p10']:.2f}, "
              f"p90 {v['speedup_p90']:.2f}; ratio of medians {v['ratio_of_medians']:.2f}x)  top1 " + ", ".join(f"{h} {u['top1'][h]:.3f}->{p['top1'][h]:.3f}" for h in u["top1"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
