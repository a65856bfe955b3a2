#!/usr/bin/env python3
"""Each artifact of a bundle at one thread against N threads, batch 1, interleaved in one process (the measurement
behind ``[export] tune_threads``, edgemm.stages.threads), with the 95 % interval of the ratio.

    python benchmarks/bench_threads_per_artifact.py BUNDLE [--threads 2] [--json benchmarks/results/threads-<date>.json]

Rows: artifact, backend, precision, median ms at N threads and at one, one/N with its interval (edgemm.bench.paired:
rounds alternate short blocks of calls, so a slow spell of the machine hits both sides alike).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np

from edgemm.backends.base import RunnerOptions
from edgemm.backends.registry import get_backend
from edgemm.bench.machine import machine_info
from edgemm.bench.paired import measure_pair
from edgemm.bundle import Bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=6.0, help="time cap of each artifact's measurement")
    ap.add_argument("--json")
    args = ap.parse_args()
    b = Bundle.open(args.bundle)
    feeds = {k: v[:1] for k, v in np.load(b.root / "data" / "parity_samples.npz").items()}
    rows = []
    for a in b.artifacts:
        backend = get_backend(a.backend)
        if backend.reference or backend.device != "cpu" or not backend.runs(a.format) or not backend.availability().available:
            continue
        opts = RunnerOptions.for_artifact(a, backend.device)
        probed = {"static_probe": opts.static_probe} if opts.static_probe else {}
        res = measure_pair(a.backend, b.spec, b.root / a.path, a.precision, b.root / a.path, a.precision, feeds, args.threads,
                           seconds=args.seconds, min_rounds=16, a_options=probed, b_options={**probed, "threads": 1})
        r = res.ratio
        rows.append({"artifact": a.path, "backend": a.backend, "precision": a.precision, f"p50_ms_{args.threads}_threads": round(res.a_ms, 4),
                     "p50_ms_1_thread": round(res.b_ms, 4), "one_over_n": round(r.value, 4),
                     "interval_95": [round(r.low, 4), round(r.high, 4)], "rounds": r.rounds, "stable": res.stable})
        print(f"{a.path:<34} {a.backend:<12} {a.precision:<5} {res.a_ms:7.3f} ms at {args.threads}, {res.b_ms:7.3f} ms at 1: "
              f"x{r.value:.2f} ({r.low:.2f}-{r.high:.2f})", flush=True)
    if args.json:
        out = {"date": dt.date.today().isoformat(), "machine": machine_info(), "batch": 1, "threads": args.threads,
               "bundle": str(args.bundle), "command": f"python benchmarks/bench_threads_per_artifact.py {args.bundle} --threads {args.threads}",
               "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
