"""Why end_to_end was slower than the model alone: ONNX Runtime's intra-op workers spin after each run;
when the calling thread does work between runs (capture, pre-processing), the spinner and that work
compete for the cores (2 cores, 2 threads).

    python benchmarks/bench_ort_spinning.py BUNDLE_DIR [--rounds 5] [--seconds 1.5] [--json F]

Two measurements, both interleaved in rounds, in one run:
- ``in_process``: the model call's p50 in one process for 2 threads spinning / not spinning and 1 thread,
  back to back and after --gap-ms of busy work on the calling thread;
- ``bench``: ``edgemm bench``'s own workers (a fresh process per measurement), model and end_to_end at
  batch 1, with ``RunnerOptions(spin=True)`` (onnxruntime's default before) and ``spin=False`` (edgemm's
  default now when the pool has as many threads as cores): p50, p90, stage medians and the ratio
  end_to_end / model for each.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgemm.bench import run as bench_run
from edgemm.bench.machine import machine_info
from edgemm.bundle import Bundle


def in_process(b: Bundle, rounds: int, calls: int, gap_ms: float) -> dict:
    art = next(a for a in b.artifacts if a.backend == "onnxruntime" and a.precision == "fp32")
    feeds = {k: v[:1] for k, v in np.load(b.root / b.manifest.get("parity_samples", {}).get("path", "data/parity_samples.npz")).items()}

    def session(threads: int, spin: bool):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        return ort.InferenceSession(str(b.root / art.path), so, providers=["CPUExecutionProvider"])

    sessions = {"2 threads, spinning": session(2, True), "2 threads, no spinning": session(2, False), "1 thread": session(1, True)}

    def busy(ms: float) -> None:
        t = time.perf_counter() + ms / 1e3
        while time.perf_counter() < t:
            pass

    res: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, s in sessions.items():
            for gap in (0.0, gap_ms):
                k = f"{name}, gap {gap:g} ms"
                for _ in range(calls):
                    if gap:
                        busy(gap)
                    t0 = time.perf_counter()
                    s.run(None, feeds)
                    res.setdefault(k, []).append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": {k: round(float(np.median(v)), 3) for k, v in res.items()},
            "p90_ms": {k: round(float(np.percentile(v, 90)), 3) for k, v in res.items()}}


def through_bench_workers(b: Bundle, rounds: int, seconds: float, threads: int) -> dict:
    cfg = bench_run.BenchConfig(backends=("onnxruntime",), precisions=("fp32",), batches=(1,), seconds=seconds, rounds=rounds,
                                threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = bench_run._jobs(b, cfg, threads, bench_run._raw_samples(b, Path(tmp)), [])
        lat: dict[str, list[float]] = {}
        stages: dict[str, dict[str, list[float]]] = {}
        for _ in range(rounds):
            for job in jobs:
                for spin in (True, False):
                    out = bench_run._run_worker({**job, "spin": spin}, bench_run.worker_timeout_s(cfg))
                    k = f"{job['mode']}, spin={spin}"
                    lat.setdefault(k, []).extend(out["latencies_ms"])
                    for s, v in out.get("stages_ms", {}).items():
                        stages.setdefault(k, {}).setdefault(s, []).extend(v)
    res = {k: {"p50_ms": round(float(np.median(v)), 3), "p90_ms": round(float(np.percentile(v, 90)), 3), "calls": len(v),
               **({"stages_p50_ms": {s: round(float(np.median(x)), 4) for s, x in stages[k].items()}} if k in stages else {})}
           for k, v in lat.items()}
    for spin in (True, False):
        res[f"end_to_end / model, spin={spin}"] = round(res[f"end_to_end, spin={spin}"]["p50_ms"] / res[f"model, spin={spin}"]["p50_ms"], 3)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--gap-ms", type=float, default=0.3)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    b = Bundle.open(args.bundle)
    import os

    load = [list(os.getloadavg())]
    result = {"machine": machine_info(), "command": " ".join(["python", *sys.argv]), "threads": args.threads, "batch": 1,
              "rounds": args.rounds, "in_process": in_process(b, args.rounds, args.calls, args.gap_ms)}
    load.append(list(os.getloadavg()))
    result["bench"] = through_bench_workers(b, args.rounds, args.seconds, args.threads)
    load.append(list(os.getloadavg()))
    result["loadavg"] = load
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
