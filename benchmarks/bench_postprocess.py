"""Per-frame post-processing: ``native.TopLabels`` (what Stream and the end_to_end bench use) vs
``Runtime.labels`` (float64 softmax over every sample), same logits, interleaved rounds, one process.

    python benchmarks/bench_postprocess.py BUNDLE_DIR [--rounds 7] [--calls 2000]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import edgemm
from edgemm.frontends.native import TopLabels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    rt = edgemm.load(args.bundle, backend="onnxruntime")
    feeds = {t.name: np.zeros([1 if isinstance(d, str) else d for d in t.shape], t.dtype) for t in rt.inputs}
    raw = rt.run(feeds)
    top = TopLabels(rt.outputs)
    paths = {"Runtime.labels": lambda: rt.labels(raw), "TopLabels": lambda: top(raw)}
    times = {k: [] for k in paths}
    for _ in range(args.rounds):
        for k, f in paths.items():
            for _ in range(args.calls):
                t0 = time.perf_counter()
                f()
                times[k].append((time.perf_counter() - t0) * 1e6)
    out = {k: {q: round(float(np.percentile(v, p)), 2) for q, p in (("p50_us", 50), ("p90_us", 90), ("p99_us", 99))}
           for k, v in times.items()}
    out["ratio_p50"] = round(out["Runtime.labels"]["p50_us"] / out["TopLabels"]["p50_us"], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
