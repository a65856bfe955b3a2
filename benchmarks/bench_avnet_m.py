#!/usr/bin/env python3
"""INT8 against fp32, and the per-call fixed cost, on the reference models: batch 1, fixed threads, one process.

    edgemm export export/avnet_m.toml --int8 -o build/avnet_m
    edgemm export export/avnet.toml --int8 -o build/avnet
    python benchmarks/bench_avnet_m.py build/avnet_m build/avnet --json benchmarks/results/avnet_m-DATE.json

Every onnxruntime and openvino fp32/int8 artifact of each bundle is timed, plus the variants that change the fixed
cost of a call:
- ``onnxruntime ... +static``: the session built with ONNX Runtime's free-dimension override (the batch axis fixed
  to ``--batch``: shapes known when the session is made) instead of the dynamic one;
- ``openvino ... +dynamic`` / ``+static``: the IR compiled with its dynamic batch axis / reshaped to ``--batch``
  (the runner's default is static for fp32, dynamic for int8).
Timing: ``--rounds`` interleaved rounds (the order rotates every round); each round runs every path for a block of
calls after a warm-up, so a burst of load from other processes hits all paths alike. Reported per path: median,
p90, p99 over all calls, the median of the round medians, and ratios taken within this run only: int8 / fp32 per
backend, best int8 / best fp32 per model, each variant / its base path. Top-1 per artifact comes from the
bundle's own reports/accuracy.json (the export's evaluation split).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgemm.backends.base import RunnerOptions
from edgemm.backends.onnxruntime.backend import OrtRunner
from edgemm.backends.openvino.backend import OpenVinoRunner
from edgemm.bench.machine import machine_info
from edgemm.bundle import Bundle

BACKENDS = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "fp16", "int8")


def feeds_for(spec, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {t.name: rng.standard_normal([batch if isinstance(d, str) else d for d in t.shape]).astype(t.dtype) for t in spec.inputs}


def top1_of(bundle: Bundle, art) -> dict | None:
    acc = bundle.report("accuracy") or {}
    arts = acc.get("artifacts", {})
    for key in (bundle.artifact_id(art), art.path, f"{art.path}#{art.backend}"):
        if key in arts:
            return arts[key].get("metrics")
    return None


def paths_of(bundle: Bundle, threads: int, batch: int, variants: bool) -> list[dict]:
    """(name, runner) for every fp32/int8 artifact of the bundle and the fixed-cost variants."""
    out = []
    for art in bundle.artifacts:
        if art.backend not in BACKENDS or art.precision not in PRECISIONS or art.graph != "main":
            continue
        path = bundle.file(art.path)
        opts = RunnerOptions(threads=threads, precision=art.precision)
        name = f"{art.backend} {art.precision} {art.path}"
        entry = {"artifact": art.path, "backend": art.backend, "precision": art.precision, "method": art.method,
                 "metrics": top1_of(bundle, art), "speed": art.extra.get("speed") if isinstance(art.extra, dict) else None}
        if art.backend == "onnxruntime":
            out.append({**entry, "name": name, "variant": "default", "runner": OrtRunner(path, bundle.spec, opts)})
            if variants:
                out.append({**entry, "name": name + " +static", "variant": "static", "base": name,
                            "runner": OrtRunner(path, bundle.spec, opts, static_batch=batch)})
        else:
            runner = OpenVinoRunner(path, bundle.spec, opts)
            default = "static" if runner._specialise else "dynamic"  # noqa: SLF001 - the runner's own choice, reported
            out.append({**entry, "name": name, "variant": f"default ({default})", "runner": runner})
            if variants:
                other = "dynamic" if default == "static" else "static"
                alt = OpenVinoRunner(path, bundle.spec, opts)
                alt._specialise = other == "static"  # noqa: SLF001 - the variant measured
                out.append({**entry, "name": f"{name} +{other}", "variant": other, "base": name, "runner": alt})
    return out


def block(runner, feeds, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        runner.infer(feeds, check=False)
        times.append((time.perf_counter() - t) * 1e3)
    return times


def bench_bundle(root: Path, args) -> dict:
    bundle = Bundle.open(root)
    feeds = feeds_for(bundle.spec, args.batch)
    paths = paths_of(bundle, args.threads, args.batch, not args.no_variants)
    for p in paths:  # warm-up, and the block size: about --block-s seconds of calls per path and round
        block(p["runner"], feeds, 5)
        one = float(np.median(block(p["runner"], feeds, 5)))
        p["calls"] = max(5, min(500, int(args.block_s * 1e3 / max(one, 1e-3))))
        p["rounds"] = []
    for r in range(args.rounds):
        k = r % len(paths)
        for p in paths[k:] + paths[:k]:
            block(p["runner"], feeds, 2)
            p["rounds"].append(block(p["runner"], feeds, p["calls"]))
    rows = []
    for p in paths:
        every = np.concatenate(p["rounds"])
        row = {k: p[k] for k in ("name", "artifact", "backend", "precision", "method", "variant", "metrics", "speed")}
        row.update({"base": p.get("base"), "batch": args.batch, "threads": args.threads, "rounds": len(p["rounds"]),
                    "calls_per_round": p["calls"], "p50_ms": round(float(np.median(every)), 4),
                    "p90_ms": round(float(np.percentile(every, 90)), 4), "p99_ms": round(float(np.percentile(every, 99)), 4),
                    "median_of_rounds_ms": round(float(np.median([np.median(x) for x in p["rounds"]])), 4),
                    "round_medians_ms": [round(float(np.median(x)), 4) for x in p["rounds"]]})
        rows.append(row)
        p["runner"].close()
    by_name = {r["name"]: r for r in rows}
    ratios = {}
    for backend in BACKENDS:
        base = [r for r in rows if r["backend"] == backend and r["precision"] == "fp32" and r["base"] is None]
        for r in rows:
            if r["backend"] == backend and r["precision"] == "int8" and r["base"] is None and base:
                ratios[f"{backend} int8/fp32 ({r['artifact']})"] = round(r["p50_ms"] / base[0]["p50_ms"], 4)
    plain = [r for r in rows if r["base"] is None]
    best = {prec: min((r for r in plain if r["precision"] == prec), key=lambda r: r["p50_ms"], default=None) for prec in PRECISIONS}
    if best["fp32"] and best["int8"]:
        ratios["best int8 / best fp32"] = round(best["int8"]["p50_ms"] / best["fp32"]["p50_ms"], 4)
        ratios["best fp32"], ratios["best int8"] = best["fp32"]["name"], best["int8"]["name"]
    for r in rows:
        if r["base"]:
            ratios[f"{r['name']} / default"] = round(r["p50_ms"] / by_name[r["base"]]["p50_ms"], 4)
    acc = bundle.report("accuracy") or {}
    return {"bundle": str(root), "model": bundle.name, "reference": acc.get("reference"), "split": acc.get("split"),
            "samples": acc.get("samples"), "rows": rows, "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--block-s", type=float, default=0.4, help="seconds of calls per path and round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--no-variants", action="store_true", help="only the artifacts, not the fixed-cost variants")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = {"machine": machine_info(), "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
           "models": [bench_bundle(b, args) for b in args.bundles]}
    out["machine"]["loadavg_after"] = [round(x, 2) for x in __import__("os").getloadavg()]
    for m in out["models"]:
        print(f"{m['model']}:")
        for r in m["rows"]:
            print(f"  {r['name']:58s} p50 {r['p50_ms']:8.3f}  p90 {r['p90_ms']:8.3f}  p99 {r['p99_ms']:8.3f} ms  top1 {r['metrics']}")
        for k, v in m["ratios"].items():
            print(f"  {k}: {v}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
