"""Streaming benchmark: a live-paced 30 fps camera + microphone (synthetic live sources on the
monotonic clock) through the avnet bundle.

    python benchmarks/bench_stream.py [--bundle DIR] [--seconds 20] [--slow-ms 50] [--size 1280x720]

1. fast model (avnet on ONNX Runtime, ~1 ms): dropped frames and capture-to-result latency vs the
   model's own latency (the bar: no drop, median <= model + 5 ms);
2. a model slower than the frame period (the same model plus --slow-ms per call) with the
   ``latest`` policy: drops, and latency percentiles per time slice (bounded, not growing).
Builds the bundle (edgemm export export/avnet.toml) when --bundle is not given. Writes
benchmarks/results/stream-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edgemm
from edgemm.runtime import native

ROOT = Path(__file__).resolve().parents[1]


class SlowModel:
    def __init__(self, rt, delay_s):
        self.rt, self.delay_s, self.inputs = rt, delay_s, rt.inputs

    def run(self, feeds):
        t_end = time.perf_counter() + self.delay_s
        out = self.rt.run(feeds)
        while time.perf_counter() < t_end:
            time.sleep(max(0.0, t_end - time.perf_counter()))
        return out

    def labels(self, outputs):
        return self.rt.labels(outputs)


def pct(a, q):
    return round(float(np.percentile(a, q)), 3) if len(a) else None


def one(model, seconds, size, policy=None) -> dict:
    fps = 30
    s = edgemm.Stream(model, video=f"synthetic:video?fps={fps}&frames={int(seconds * fps)}&live=1&size={size}",
                      audio="synthetic:audio?live=1&seconds=0&rate=16000&block=160", policy=policy)
    t0 = time.monotonic()
    res = list(s)
    wall = time.monotonic() - t0
    c2r = np.array([r.latency_ms["capture_to_result"] for r in res])
    infer = np.array([r.latency_ms["infer"] for r in res])
    slices = []
    if len(res):
        t = np.array([r.t_capture for r in res]) - res[0].t_capture
        for k in range(4):
            m = (t >= k * seconds / 4) & (t < (k + 1) * seconds / 4)
            slices.append({"slice": k, "results": int(m.sum()), "p50_ms": pct(c2r[m], 50), "p99_ms": pct(c2r[m], 99),
                           "max_ms": pct(c2r[m], 100)})
    st = s.stats()
    stages = {k: pct([r.latency_ms[k] for r in res], 50) for k in res[0].latency_ms} if res else {}
    return {"frames": st["frames_captured"], "results": len(res), "dropped_frames": st["dropped_frames"],
            "dropped_by_stage": st["dropped_by_stage"], "policy": s.policy, "wall_s": round(wall, 2),
            "capture_to_result_ms": {"p50": pct(c2r, 50), "p90": pct(c2r, 90), "p99": pct(c2r, 99), "max": pct(c2r, 100)},
            "model_ms": {"p50": pct(infer, 50), "p99": pct(infer, 99)},
            "overhead_p50_ms": round(pct(c2r, 50) - pct(infer, 50), 3) if len(res) else None,
            "stage_p50_ms": stages, "time_slices": slices, "audio_lag_ms": st["audio_lag_ms"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--slow-ms", type=float, default=50.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--only", choices=["fast", "slow"], help="run one of the two parts")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / f"stream-{dt.date.today().isoformat()}.json"))
    args = ap.parse_args()
    bundle = args.bundle
    if bundle is None:
        bundle = str(Path(tempfile.mkdtemp()) / "avnet")
        subprocess.run([sys.executable, "-m", "edgemm", "-q", "export", str(ROOT / "export" / "avnet.toml"),
                        "--target", "onnxruntime", "-o", bundle], check=True)
    rt = edgemm.load(bundle, backend=args.backend)
    import os
    import platform

    report = {"date": dt.date.today().isoformat(), "machine": {"cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "loadavg": list(os.getloadavg()), "native_kernels": native.available()},
              "video": f"synthetic live 30 fps {args.size}", "audio": "synthetic live 16 kHz, 10 ms blocks",
              "seconds": args.seconds}
    if args.only != "slow":
        report["fast_model"] = one(rt, args.seconds, args.size)
    if args.only != "fast":
        report["slow_model_latest"] = {"extra_ms_per_call": args.slow_ms,
                                       **one(SlowModel(rt, args.slow_ms / 1000), args.seconds, args.size, "latest")}
    rt.close()
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for k in ("fast_model", "slow_model_latest"):
        if k not in report:
            continue
        r = report[k]
        print(f"{k}: {r['results']}/{r['frames']} results, dropped {r['dropped_frames']}, capture-to-result "
              f"p50 {r['capture_to_result_ms']['p50']} p90 {r['capture_to_result_ms']['p90']} p99 {r['capture_to_result_ms']['p99']} "
              f"max {r['capture_to_result_ms']['max']} ms; model p50 {r['model_ms']['p50']} ms; "
              f"slices p50 {[s['p50_ms'] for s in r['time_slices']]}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
