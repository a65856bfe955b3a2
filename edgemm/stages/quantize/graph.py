"""ONNX graph facts the quantizers need: quantizable nodes, modality branches, compact storage."""
from __future__ import annotations

from collections import defaultdict

import onnx

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FUSION = "fusion"


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every node a unique name (exclusion lists and sensitivity tables refer to nodes by name)."""
    seen = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return model


def node_branches(model: onnx.ModelProto) -> dict[str, str]:
    """node name -> the graph input it depends on alone (its modality branch), or ``"fusion"``."""
    inits = {t.name for t in model.graph.initializer}
    origin: dict[str, frozenset] = {i.name: frozenset([i.name]) for i in model.graph.input if i.name not in inits}
    out = {}
    for node in model.graph.node:  # ONNX nodes are topologically sorted
        deps = frozenset().union(*[origin.get(x, frozenset()) for x in node.input if x])
        for o in node.output:
            origin[o] = deps
        out[node.name] = next(iter(deps)) if len(deps) == 1 else FUSION
    return out


def weighted_nodes(model: onnx.ModelProto, op_types=WEIGHTED_OPS) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in op_types]


def branch_nodes(model: onnx.ModelProto) -> dict[str, list[str]]:
    """branch -> names of every node in it (inputs' branches first, then fusion)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for node, branch in node_branches(model).items():
        groups[branch].append(node)
    return dict(groups)


def compact(model: onnx.ModelProto) -> onnx.ModelProto:
    """Short internal tensor names, no node names/doc strings: the same graph in fewer bytes.

    Graph inputs and outputs keep their names (they are the IOSpec's). Applied to INT8 artifacts,
    whose Q/DQ nodes otherwise carry long generated names.
    """
    keep = {i.name for i in model.graph.input} | {o.name for o in model.graph.output}
    names: dict[str, str] = {}

    def short(x: str) -> str:
        if not x or x in keep:
            return x
        return names.setdefault(x, f"t{len(names)}")

    for t in model.graph.initializer:
        t.name = short(t.name)
        t.doc_string = ""
    for node in model.graph.node:
        node.name = ""
        node.doc_string = ""
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
    del model.graph.value_info[:]
    model.doc_string = ""
    model.graph.doc_string = ""
    return model


def layer_segments(model: onnx.ModelProto, op_types=WEIGHTED_OPS) -> dict[str, set[str]]:
    """weighted node -> itself plus the non-weighted nodes that feed it back to the previous weighted
    node or graph input (Relu, Concat, Add, Reshape...). Quantizers put Q/DQ on those too, so keeping
    a "layer" float means keeping its segment float."""
    producers = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        seg, stack = {node.name}, [x for x in node.input if x in producers]
        while stack:
            p = producers[stack.pop()]
            if p.op_type in op_types or p.name in seg:
                continue
            seg.add(p.name)
            stack.extend(x for x in p.input if x in producers)
        out[node.name] = seg
    return out
