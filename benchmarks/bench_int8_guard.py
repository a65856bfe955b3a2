#!/usr/bin/env python3
"""avnet INT8 vs fp32 per CPU target, before/after a change to the INT8 stage: export, then time interleaved.

    # 1. export with each version of edgemm (the PYTHONPATH picks it), e.g. main vs this branch:
    PYTHONPATH=/work/main python benchmarks/bench_int8_guard.py export build/int8-before
    PYTHONPATH=.          python benchmarks/bench_int8_guard.py export build/int8-after
    # 2. time every bundle's fp32 and int8 artifacts per target, interleaved in one process, and write the result:
    python benchmarks/bench_int8_guard.py time build/int8-before build/int8-after [--batches 1 8] [--rounds 9]

``export``: ``export/avnet.toml --int8 --target onnxruntime,openvino`` (the recipe's budget, speed guard on).
``time``: for each target and batch, the fp32 artifact and each bundle's int8 artifact run in turn (A, B, C, A, B, C
...; 2 threads; ``rounds`` rounds of ~0.5 s each), per-call medians and p90 pooled over rounds, and each int8/fp32
ratio computed against the fp32 timed in the same rounds. Accuracy drops and the manifest's speed verdict come from
each bundle. Writes benchmarks/results/int8-<date>.json (with the CPU flags).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FP32 = {"onnxruntime": "onnx/model.fp32.onnx", "openvino": "openvino/model.fp32.xml"}


def export(out: Path) -> None:
    import edgemm

    t0 = time.perf_counter()
    edgemm.export(str(ROOT / "export" / "avnet.toml"), output=out, int8=True, targets=["onnxruntime", "openvino"], threads=2)
    print(f"exported {out} in {time.perf_counter() - t0:.0f} s with edgemm from {Path(edgemm.__file__).parent}")


def _times(runner, feeds, seconds: float) -> list[float]:
    ts = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(ts) < 20:
        t0 = time.perf_counter()
        runner.infer(feeds, check=False)
        ts.append((time.perf_counter() - t0) * 1e3)
    return ts


def time_bundles(bundles: list[Path], batches: list[int], rounds: int, out: Path) -> None:
    import edgemm
    from edgemm.backends.base import RunnerOptions
    from edgemm.backends.registry import get_backend
    from edgemm.bench.machine import machine_info

    opened = [edgemm.Bundle.open(b) for b in bundles]
    spec = opened[0].spec
    parity = dict(np.load(bundles[0] / "data/parity_samples.npz"))
    rows = []
    for target in ("onnxruntime", "openvino"):
        be = get_backend(target)
        arts = [("fp32", bundles[0] / FP32[target], "fp32")]
        for b, bo in zip(bundles, opened):
            a = next(a for a in bo.artifacts if a.precision == "int8" and a.backend == target)
            arts.append((str(b), b / a.path, "int8"))
        for batch in batches:
            feeds = {k: np.repeat(v[:1], batch, axis=0) for k, v in parity.items()}
            runners = [be.create_runner(p, spec, RunnerOptions(threads=2, precision=prec)) for _, p, prec in arts]
            for r in runners:
                _times(r, feeds, 0.3)  # warm-up
            per: list[list[list[float]]] = [[] for _ in runners]
            for _ in range(rounds):
                for i, r in enumerate(runners):
                    per[i].append(_times(r, feeds, 0.5))
            for r in runners:
                r.close()
            fp32_medians = [float(np.median(x)) for x in per[0]]
            for (label, path, prec), ts in zip(arts, per):
                pooled = np.concatenate(ts)
                med_rounds = [float(np.median(x)) for x in ts]
                row = {"target": target, "batch": batch, "artifact": label if prec == "fp32" else f"{label}/{path.relative_to(label)}",
                       "precision": prec, "p50_ms": float(np.median(pooled)), "p90_ms": float(np.percentile(pooled, 90)),
                       "vs_fp32": float(np.median([m / f for m, f in zip(med_rounds, fp32_medians)])),
                       "size_mb": round(path.stat().st_size / 1e6 + (path.with_suffix(".bin").stat().st_size / 1e6 if path.suffix == ".xml" else 0), 3)}
                if prec == "int8":
                    b = Path(label)
                    acc = json.loads((b / "reports/accuracy.json").read_text())
                    aid = next(k for k, v in acc["artifacts"].items() if v["precision"] == "int8" and v["backend"] == target
                               and v.get("method") == "ptq")
                    m = json.loads((b / "manifest.json").read_text())
                    extra = next(a["extra"] for a in m["artifacts"] if a["precision"] == "int8" and a["backend"] == target)
                    row.update(digit_drop=acc["artifacts"][aid]["drop"]["digit"], speed_in_manifest=extra.get("speed"),
                               kept_float=sum(k["nodes"] for k in extra.get("kept_float", [])))
                rows.append(row)
                print(json.dumps(row), flush=True)
    flags = subprocess.run("grep -o -w -E 'avx512_vnni|avx_vnni|avx2' /proc/cpuinfo | sort -u", shell=True, capture_output=True,
                           text=True).stdout.split()
    result = {"machine": machine_info(), "cpu_flags": flags, "threads": 2, "rounds": rounds, "batches": batches,
              "bundles": [str(b) for b in bundles], "command": " ".join(["python", "benchmarks/bench_int8_guard.py", *sys.argv[1:]]),
              "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("out", type=Path)
    t = sub.add_parser("time")
    t.add_argument("bundles", type=Path, nargs="+")
    t.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    t.add_argument("--rounds", type=int, default=9)
    t.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"int8-{date.today()}.json")
    args = ap.parse_args()
    if args.cmd == "export":
        export(args.out)
    else:
        time_bundles(args.bundles, args.batches, args.rounds, args.out)


if __name__ == "__main__":
    main()
