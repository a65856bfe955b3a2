"""Why the model stage is slower inside end_to_end than back to back: ONNX Runtime's intra-op thread pool
spins after each run; when the calling thread does work between runs (pre-processing), the spinner and
that work compete for the cores. Same session options as the bench otherwise, interleaved rounds, one process.

    python benchmarks/bench_ort_spinning.py BUNDLE_DIR [--rounds 5] [--calls 200] [--gap-ms 0.4]

Prints the model call's p50 (ms) for: 2 threads with spinning (onnxruntime's default), 2 threads without
spinning (session.intra_op.allow_spinning=0), 1 thread; each back to back (gap 0) and after --gap-ms of
busy work on the calling thread (what pre-processing does).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort

from edgemm.bundle import Bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--gap-ms", type=float, default=0.4)
    args = ap.parse_args()
    b = Bundle.open(args.bundle)
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
    for _ in range(args.rounds):
        for name, s in sessions.items():
            for gap in (0.0, args.gap_ms):
                k = f"{name}, gap {gap:g} ms"
                for _ in range(args.calls):
                    if gap:
                        busy(gap)
                    t0 = time.perf_counter()
                    s.run(None, feeds)
                    res.setdefault(k, []).append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"loadavg": os.getloadavg(), "p50_ms": {k: round(float(np.median(v)), 3) for k, v in res.items()},
                      "p90_ms": {k: round(float(np.percentile(v, 90)), 3) for k, v in res.items()}}, indent=1))


if __name__ == "__main__":
    main()
