#!/usr/bin/env python3
"""A model edgemm was not built around (tests/quantize/user_models.py) through ``--int8``: accuracy vs the user's model,
per-kernel ONNX Runtime profile and interleaved latency, fp32 vs int8.

    python benchmarks/bench_int8_user_model.py [--rounds 9] [--out F]

Saves the .pt2 + calibration dir + 100 held-out samples, runs ``edgemm.export(model.pt2, int8=True, calibration=DIR,
targets=["onnxruntime"])`` (speed guard on, no labels), then: cosine and top-1 agreement of the int8 artifact vs the
torch program on the held-out samples; the guard's verdict (manifest ``speed``) and candidates (reports/speed.json);
ONNX Runtime per-kernel profile (per-iteration medians, 2 threads, batch 1) of the fp32 and int8 artifacts; batch 1 and
8 latency, fp32 and int8 run in turn (2 threads, ``rounds`` rounds of ~0.5 s), medians + p90 and the per-round ratio.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "quantize"))


def main() -> None:
    import edgemm
    from edgemm.backends.base import RunnerOptions
    from edgemm.backends.registry import get_backend
    from edgemm.bench.machine import machine_info
    from edgemm.compare import Comparator
    from edgemm.stages.quantize.profile import profile_nodes
    from edgemm.stages.quantize.ptq import _by_kernel
    from user_models import save_user_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"int8-user-model-{date.today()}.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pt2, calib, held = save_user_model(tmp / "user")
        t0 = time.perf_counter()
        b = edgemm.export(str(pt2), output=tmp / "b", int8=True, calibration=str(calib), targets=["onnxruntime"], threads=2)
        export_s = time.perf_counter() - t0
        int8 = next(a for a in b.artifacts if a.precision == "int8")
        fp32 = b.root / "onnx/model.fp32.onnx"
        feeds = dict(np.load(held))
        cmp = Comparator(b.spec, feeds)
        ref = cmp.run_module(torch.export.load(str(pt2)))
        got = cmp.run_artifact("onnxruntime", b.root / int8.path, RunnerOptions(threads=2, precision="int8"))
        accuracy = {"heldout_samples": len(cmp), "cosine": min(v["cosine"] for v in cmp.parity(ref, got).values()),
                    "agreement": min(cmp.agreement(ref, got).values())}
        speed = json.loads((b.root / "reports/speed.json").read_text())["targets"]["onnxruntime"]
        one = {k: v[:1] for k, v in feeds.items()}
        prof = {name: _by_kernel(profile_nodes(p, one, 2)) for name, p in (("fp32", fp32), ("int8", b.root / int8.path))}
        latency = []
        be = get_backend("onnxruntime")
        for batch in (1, 8):
            f = {k: v[:batch] for k, v in feeds.items()}
            rs = [be.create_runner(p, b.spec, RunnerOptions(threads=2, precision=pr)) for p, pr in ((fp32, "fp32"), (b.root / int8.path, "int8"))]
            per = [[], []]
            for _ in range(args.rounds):
                for i, r in enumerate(rs):
                    ts, end = [], time.perf_counter() + 0.5
                    while time.perf_counter() < end:
                        s = time.perf_counter()
                        r.infer(f, check=False)
                        ts.append((time.perf_counter() - s) * 1e3)
                    per[i].append(ts)
            for r in rs:
                r.close()
            meds = [[float(np.median(x)) for x in p] for p in per]
            for name, p in zip(("fp32", "int8"), per):
                pooled = np.concatenate(p)
                latency.append({"batch": batch, "precision": name, "p50_ms": float(np.median(pooled)),
                                "p90_ms": float(np.percentile(pooled, 90))})
            latency[-1]["vs_fp32"] = float(np.median([i / f for i, f in zip(meds[1], meds[0])]))
        result = {"machine": machine_info(), "cpu_flags": subprocess.run(
            "grep -o -w -E 'avx512_vnni|avx_vnni|avx2' /proc/cpuinfo | sort -u", shell=True, capture_output=True, text=True).stdout.split(),
            "command": "python benchmarks/bench_int8_user_model.py", "export_s": export_s, "accuracy": accuracy,
            "manifest_speed": int8.extra["speed"], "checks": int8.extra.get("checks"), "kept_float": int8.extra.get("kept_float"),
            "guard": {k: v for k, v in speed.items() if k != "profile"},
            "guard_profile_nodes": (speed.get("profile") or {}).get("nodes"), "profile_by_kernel_ms": prof, "latency": latency}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({"accuracy": accuracy, "speed": result["manifest_speed"], "latency": latency}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
