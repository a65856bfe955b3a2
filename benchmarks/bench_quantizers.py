#!/usr/bin/env python3
"""Which INT8 quantizer per CPU target? Accuracy, size and batch-1 latency vs fp32, on the reference model.

    python benchmarks/bench_quantizers.py [--rounds 7] [--threads 2]

For each target (onnxruntime, openvino) and each quantizer that can serve it, exports
export/avnet.toml with --int8 (speed guard and budget off, so the quantizer's raw result is
measured), then times the fp32 and INT8 artifacts of that target on its own backend, interleaved
(fp32, int8, fp32, int8, ...), batch 1. Accuracy is top-1 on the shipped evaluation split (600
held-out pairs) from the bundle's accuracy report. Writes benchmarks/results/quantizers-<date>.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

import edgemm
from edgemm.bench.machine import machine_info
from edgemm.stages.quantize.ptq import compare_latency

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {"onnxruntime": ("ort", "trt"), "openvino": ("trt", "nncf", "ort")}
FP32 = {"onnxruntime": "onnx/model.fp32.onnx", "openvino": "openvino/model.fp32.xml"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"quantizers-{date.today()}.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for target, quantizers in CANDIDATES.items():
            for q in quantizers:
                out = Path(tmp) / f"{target}-{q}"
                b = edgemm.export(str(ROOT / "export" / "avnet.toml"), output=out, int8=True, targets=[target],
                                  quantizer={target: q}, speed_guard=False, max_drop=None, threads=args.threads)
                acc = json.loads((out / "reports" / "accuracy.json").read_text())
                int8 = next(a for a in b.artifacts if a.precision == "int8" and a.backend == target)
                fp32 = next(a for a in b.artifacts if a.path == FP32[target])
                fp32_ms, int8_ms = compare_latency(target, b.spec, out / fp32.path, "fp32", out / int8.path, "int8",
                                                   {k: v[:1] for k, v in dict(np.load(out / "data/parity_samples.npz")).items()},
                                                   args.threads, rounds=args.rounds)
                row = {
                    "target": target, "quantizer": q, "artifact": int8.path,
                    "fp32_top1": acc["reference"]["metrics"], "int8_top1": acc["artifacts"][b.artifact_id(int8)]["metrics"],
                    "digit_drop": acc["artifacts"][b.artifact_id(int8)]["drop"]["digit"],
                    "size_ratio": int8.size_bytes(out) / fp32.size_bytes(out),
                    "fp32_p50_ms": fp32_ms, "int8_p50_ms": int8_ms, "latency_ratio": int8_ms / fp32_ms,
                }
                rows.append(row)
                print(f"{target:<12} {q:<5} digit drop {row['digit_drop']:+.4f}  size {row['size_ratio']:.1%} of fp32  "
                      f"batch-1 p50 {int8_ms:.3f} ms vs fp32 {fp32_ms:.3f} ms (x{row['latency_ratio']:.2f})", flush=True)
    result = {"machine": machine_info(), "batch": 1, "threads": args.threads, "rounds": args.rounds,
              "command": "python benchmarks/bench_quantizers.py", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
