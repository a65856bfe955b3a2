#!/usr/bin/env python3
"""Does INT8 saturate on this CPU? Each weighted layer quantized alone, run three ways, top-1 drop vs fp32.

    python benchmarks/bench_int8_saturation.py [--out F]

The probe is the two-branch model of tests/quantize (fp32 labels = its own predictions, so fp32 top-1 is 1.0; 200
held-out samples, 200 calibration samples). For each Q/DQ scheme (``ort``: uint8 activations, ``trt``: symmetric int8,
the openvino target's default), with 8-bit and 7-bit (``reduce_range``) weights, each layer is quantized alone and run:
- ``ort_fused``: ONNX Runtime's int8 kernels (what ships);
- ``ort_emulated``: the same file with ``session.disable_quant_qdq=1`` (Q/DQ computed in float: the exact int8 math,
  no 16-bit intermediate sums) -- the reference a kernel that does not saturate must match;
- ``openvino``: OpenVINO's CPU plugin reading the same Q/DQ ONNX (its own low-precision kernels).
Then the NNCF IR of the whole model (the ``nncf`` quantizer) vs the ``trt`` Q/DQ of the whole model in both runtimes.
A drop in ``*_fused``/``openvino`` that ``ort_emulated`` does not show is saturation (or another kernel effect).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

import edgemm
from edgemm.backends.base import RunnerOptions
from edgemm.backends.registry import get_backend
from edgemm.bench.machine import machine_info
from edgemm.cpu import cpu_int8
from edgemm.data.calibration import calibration_source
from edgemm.stages.quantize import graph as G
from edgemm.stages.quantize.qdq import SCHEMES, calibrate, preprocess_for_quantization, quantize_qdq

ROOT = Path(__file__).resolve().parents[1]


def _conftest():
    spec = importlib.util.spec_from_file_location("quantize_conftest", ROOT / "tests" / "quantize" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _top1_ort(path: Path, feeds, labels, emulate: bool) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    if emulate:
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return float((s.run(None, feeds)[0].argmax(1) == labels).mean())


def _top1_backend(backend: str, path: Path, spec, feeds, labels) -> float:
    with get_backend(backend).create_runner(path, spec, RunnerOptions(threads=2, precision="int8")) as r:
        return float((r.infer(feeds)["cls"].argmax(1) == labels).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"int8-saturation-{date.today()}.json")
    args = ap.parse_args()
    C = _conftest()
    model, spec = C.TwoBranch(0), C.two_branch_spec()
    ev, cal = C._feeds(1), C._feeds(2)
    with torch.no_grad():
        labels = model(torch.from_numpy(ev["a"]), torch.from_numpy(ev["b"])).argmax(1).numpy()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "cal.npz", **cal)
        b = edgemm.export(model, spec=spec, output=tmp / "fp32", targets=["onnxruntime"], verify=False)
        pre = preprocess_for_quantization(b.root / "onnx/model.fp32.onnx", tmp / "pre.onnx")
        m = G.name_nodes(onnx.load(str(pre)))
        onnx.save(m, str(pre))
        calib = calibration_source(tmp / "cal.npz", spec)
        segments = G.layer_segments(m)
        ov = get_backend("openvino").availability().available
        for scheme in ("ort", "trt"):
            ranges = calibrate(pre, calib, "minmax", symmetric=SCHEMES[scheme].symmetric_activations)
            for rr in (False, True):
                parts = [(f"layer:{n.name}", sorted(segments[n.name])) for n in G.weighted_nodes(m)] + [("whole model", None)]
                for part, nodes in parts:
                    out = tmp / f"{scheme}-{rr}-{len(rows)}.onnx"
                    quantize_qdq(pre, out, calib, SCHEMES[scheme], ranges, nodes_to_quantize=nodes, reduce_range=rr)
                    row = {"scheme": scheme, "reduce_range": rr, "part": part,
                           "drop_ort_fused": 1 - _top1_ort(out, ev, labels, False),
                           "drop_ort_emulated": 1 - _top1_ort(out, ev, labels, True),
                           "drop_openvino": 1 - _top1_backend("openvino", out, spec, ev, labels) if ov else None}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        if ov:
            from edgemm.backends.openvino.quant import nncf_quantize

            xml = nncf_quantize(pre, tmp / "nncf.xml", calib, [], [], transformer=False)
            row = {"scheme": "nncf (OpenVINO IR, MIXED preset)", "reduce_range": None, "part": "whole model",
                   "drop_openvino": 1 - _top1_backend("openvino", xml, spec, ev, labels)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    flags = subprocess.run("grep -o -w -E 'avx512_vnni|avx_vnni|avx2' /proc/cpuinfo | sort -u", shell=True, capture_output=True,
                           text=True).stdout.split()
    result = {"machine": machine_info(), "cpu_flags": flags, "cpu_int8": cpu_int8().to_dict(), "samples": len(labels),
              "command": "python benchmarks/bench_int8_saturation.py", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
