"""Per-node cost of a Q/DQ candidate vs the fp32 model, from ONNX Runtime's own profiler.

ONNX Runtime runs a Q/DQ model by fusing DQ -> op -> Q units into QLinear* kernels named after the
op; what it cannot fuse stays as separate QuantizeLinear / DequantizeLinear kernels named after the
tensor they convert. So the int8 cost of a quantized node is its fused kernel plus the Q kernels on
its inputs and the DQ kernels on its outputs; its fp32 cost is its kernel in the fp32 model's
profile (ORT renames some fused fp32 kernels: ``fused NAME``, ``NAME/Fusion/``). Nodes whose int8
cost clearly exceeds their fp32 cost (QLinearSoftmax, Q/DQ around ops without int8 kernels, an int8
Conv that loses the NCHWc fp32 layout) are the ones to keep float. Profiles are per-iteration
medians; the profiler's files go to a temporary directory, never the working directory.
"""
from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...lazy import lazy_import


def profile_nodes(path: Path, feeds: dict, threads: int, iters: int = 60) -> dict[str, tuple[str, float]]:
    """node name -> (kernel op, median ms per run) for ``path`` in ONNX Runtime's CPU provider."""
    ort = lazy_import("onnxruntime", "INT8 quantization")
    with tempfile.TemporaryDirectory(prefix="edgemm-prof-") as tmp:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "p")
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for _ in range(10):
            sess.run(None, feeds)
        for _ in range(iters):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    durs: dict[str, list[float]] = defaultdict(list)
    ops = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            durs[name].append(e["dur"] / 1000.0)
            ops[name] = e.get("args", {}).get("op_name", "?")
    # the last ``iters`` runs of each node (the warm-up runs are profiled too)
    return {n: (ops[n], float(np.median(v[-iters:]))) for n, v in durs.items()}


@dataclass
class NodeCost:
    node: str
    op: str
    int8_kernel: str
    int8_ms: float
    fp32_ms: float | None
    decision: str  # "int8" | "float" | "int8 (no fp32 match)"

    def to_dict(self) -> dict:
        return {"node": self.node, "op": self.op, "int8_kernel": self.int8_kernel, "int8_ms": round(self.int8_ms, 5),
                "fp32_ms": None if self.fp32_ms is None else round(self.fp32_ms, 5), "decision": self.decision}


def _fp32_time(name: str, fp32: dict[str, tuple[str, float]]) -> float | None:
    if name in fp32:
        return fp32[name][1]
    hits = [ms for n, (_, ms) in fp32.items() if n == f"fused {name}" or n.startswith(name + "/")]
    return sum(hits) if hits else None


def slower_nodes(pre_model, int8_prof: dict, fp32_prof: dict, margin: float = 0.2, floor_ms: float = 0.004) -> list[NodeCost]:
    """Every quantized node of the candidate with its int8 cost (kernel + its own Q/DQ kernels) vs its fp32 kernel."""
    graph = pre_model.graph
    by_name = {n.name: n for n in graph.node}
    consumers: dict[str, list[str]] = defaultdict(list)
    for n in graph.node:
        for x in n.input:
            consumers[x].append(n.name)
    qdq_cost: dict[str, float] = defaultdict(float)  # tensor -> Q/DQ kernel ms
    for name, (op, ms) in int8_prof.items():
        if op in ("QuantizeLinear", "DequantizeLinear"):
            tensor = name.split("_QuantizeLinear")[0].split("_DequantizeLinear")[0]
            qdq_cost[tensor] += ms
    out = []
    for name, (kernel, ms) in int8_prof.items():
        node = by_name.get(name)
        if node is None or not (kernel.startswith("QLinear") or kernel in ("QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul")):
            continue
        cost = ms
        for x in node.input:  # Q kernels on inputs this node alone consumes
            if x and consumers.get(x) == [name]:
                cost += qdq_cost.get(x, 0.0)
        for y in node.output:
            cost += qdq_cost.get(y, 0.0)
        f = _fp32_time(name, fp32_prof)
        if f is None:
            decision = "int8 (no fp32 match)"
        else:
            decision = "float" if cost > f * (1 + margin) + floor_ms else "int8"
        out.append(NodeCost(name, node.op_type, kernel, cost, f, decision))
    out.sort(key=lambda c: -(c.int8_ms - (c.fp32_ms or c.int8_ms)))
    return out
