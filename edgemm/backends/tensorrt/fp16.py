"""The fp16 graph a strongly typed TensorRT network is built from: float tensors cast to fp16, the precision
policy's parts kept in fp32, graph inputs and outputs kept fp32.

TensorRT 11 takes precision from the network's tensor types only (migration guide, "Strongly Typed Networks Are
Now Required"); its guide converts the fp32 ONNX with ModelOpt AutoCast (``keep_io_types=True``; nodes kept in
fp32 by op type or name). This is edgemm's own, smaller cast with the same contract, so it needs no extra package:

- every node whose ONNX schema allows float16 for its float tensors computes in fp16, except the ops in
  ``keep_ops`` (normalisation statistics, exp/log/pow: ranges fp16 overflows) and the nodes in ``keep_nodes``
  (the precision policy's float parts, e.g. ``PrecisionPolicy.nodes(model)``);
- a concrete ``tensor(float)`` input of a schema (Resize's scales) stays fp32;
- ``Cast`` nodes, ``Constant``/``ConstantOfShape`` values follow the precision of their node;
- float initializers get an fp16 copy where an fp16 node reads them;
- a ``Cast`` is inserted wherever a tensor crosses between fp16 and fp32.

Control-flow nodes (If/Loop/Scan with subgraphs) are refused: their outer-scope references cannot be re-typed here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ...errors import EdgemmError, UnsupportedFeature, close_match_hint
from ...lazy import lazy_import

# Ops whose fp16 range or precision loses the result (variance sums, exp/log/pow); ModelOpt AutoCast keeps the same
# families in fp32 by default for the same reason.
DEFAULT_FP32_OPS = ("LayerNormalization", "GroupNormalization", "InstanceNormalization", "ReduceMean", "ReduceSum",
                    "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Pow", "Sqrt", "Reciprocal", "Exp", "Log", "CumSum")
# Ops that make float tensors from a dtype attribute, or compare types: left as they are.
_TYPED_BY_ATTRIBUTE = ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "EyeLike", "Bernoulli",
                       "Multinomial", "CastLike")
# Ops that read only the shape of their input: no cast needed either way.
_SHAPE_ONLY = ("Shape", "Size")


@dataclass
class Fp16Report:
    fp16_nodes: int = 0
    fp32_nodes: list[str] = field(default_factory=list)  # nodes with float tensors kept fp32
    kept_by_policy: list[str] = field(default_factory=list)
    casts: int = 0

    def to_dict(self) -> dict:
        return {"fp16_nodes": self.fp16_nodes, "fp32_nodes": sorted(self.fp32_nodes),
                "kept_by_policy": sorted(self.kept_by_policy), "casts": self.casts}


def check_node_names(model, names: Iterable[str]) -> None:
    """Refuse fp32 node names that name no node of ``model`` (a typo would silently keep nothing in fp32)."""
    have = {n.name for n in model.graph.node}
    unknown = sorted(set(names) - have)
    if unknown:
        hint = close_match_hint(unknown[0], have)
        raise EdgemmError(f"fp32 node(s) {', '.join(map(repr, unknown[:5]))} are not in the ONNX graph{hint}; "
                          "name nodes of this ONNX model or drop them")


def _schema_slots(onnx, node, opset: dict[str, int]):
    """(input slots, output slots) of ``node``: per slot, whether tensor(float16) is allowed; None: no schema."""
    domain = node.domain or ""
    if domain not in ("", "ai.onnx"):
        return None
    try:
        schema = onnx.defs.get_schema(node.op_type, opset.get("", 1), "")
    except Exception:  # onnx.defs.SchemaError: an op this onnx version does not know
        return None
    constraints = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}

    def allowed(formals, count):
        out = []
        for i in range(count):
            if not formals:
                out.append(False)
                continue
            f = formals[min(i, len(formals) - 1)]
            ts = f.type_str
            out.append(ts == "tensor(float16)" if ts.startswith("tensor(") else "tensor(float16)" in constraints.get(ts, ()))
        return out

    return allowed(schema.inputs, len(node.input)), allowed(schema.outputs, len(node.output))


def fp16_cast(model, keep_nodes: Iterable[str] = (), keep_ops: Iterable[str] = DEFAULT_FP32_OPS):
    """``(fp16 model, Fp16Report)``: a copy of ``model`` (an fp32 onnx.ModelProto) cast as the module docstring says."""
    onnx = lazy_import("onnx")
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for n in g.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            raise UnsupportedFeature(f"the fp16 cast does not handle control flow ({n.op_type} node {n.name or n.output[0]!r}); "
                                     "build this graph as fp32 or int8")
    keep_nodes, keep_ops = set(keep_nodes), set(keep_ops)
    check_node_names(m, keep_nodes)
    opset = {(o.domain or ""): o.version for o in m.opset_import}
    inferred = shape_inference.infer_shapes(m)
    elem: dict[str, int] = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        elem[vi.name] = vi.type.tensor_type.elem_type
    inits = {t.name: t for t in g.initializer}
    for t in g.initializer:
        elem[t.name] = t.data_type
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            value = next((a for a in n.attribute if a.name == "value"), None)
            if value is not None:
                elem[n.output[0]] = value.t.data_type
            elif any(a.name in ("value_float", "value_floats") for a in n.attribute):
                elem[n.output[0]] = FLOAT

    report = Fp16Report()
    current: dict[str, int] = {x: FLOAT for x, t in elem.items() if t == FLOAT}  # float tensors -> type they have now
    casts: dict[tuple[str, int], str] = {}
    half_inits: dict[str, str] = {}
    new_nodes = []

    def cast_of(x: str, to: int) -> str:
        key = (x, to)
        if key not in casts:
            name = f"{x}__to_{'fp16' if to == HALF else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [x], [name], name=f"{name}_cast", to=to))
            casts[key] = name
            current[name] = to
            report.casts += 1
        return casts[key]

    def half_init(x: str) -> str:
        if x not in half_inits:
            name = f"{x}__fp16"
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[x]).astype(np.float16), name))
            half_inits[x] = name
            current[name] = HALF
        return half_inits[x]

    for n in g.node:
        tensors = [x for x in (*n.input, *n.output) if x]
        has_float = any(elem.get(x) == FLOAT for x in tensors)
        if not has_float or n.op_type in _SHAPE_ONLY:
            new_nodes.append(n)
            continue
        slots = _schema_slots(onnx, n, opset)
        eligible = (slots is not None and n.op_type not in keep_ops and n.name not in keep_nodes
                    and n.op_type not in _TYPED_BY_ATTRIBUTE and all(elem.get(x, 0) != 0 for x in tensors))
        if eligible and n.op_type not in ("Cast", "Constant", "ConstantOfShape"):
            ins, outs = slots
            eligible = all(ok for x, ok in zip(n.output, outs) if x and elem.get(x) == FLOAT)
        if not eligible:
            report.fp32_nodes.append(n.name or n.output[0])
            if n.name in keep_nodes:
                report.kept_by_policy.append(n.name)
        else:
            report.fp16_nodes += 1
        in_ok = slots[0] if slots else [False] * len(n.input)
        for i, x in enumerate(n.input):
            if not x or elem.get(x) != FLOAT or n.op_type in ("Cast", *_SHAPE_ONLY):
                continue
            want = HALF if eligible and in_ok[i] else FLOAT
            if x in inits:
                if want == HALF:
                    n.input[i] = half_init(x)
            elif current.get(x, FLOAT) != want:
                n.input[i] = cast_of(x, want)
        if eligible:
            _retype_attributes(n, helper, numpy_helper, FLOAT, HALF)
        for j, y in enumerate(n.output):
            if y and elem.get(y) == FLOAT:
                current[y] = HALF if eligible else FLOAT
        new_nodes.append(n)

    # graph outputs keep fp32: the producer writes an fp16 tensor, a Cast writes the output name
    for out in g.output:
        if current.get(out.name) == HALF:
            inner = f"{out.name}__fp16"
            for n in new_nodes:
                n.output[:] = [inner if y == out.name else y for y in n.output]
                n.input[:] = [inner if x == out.name else x for x in n.input]
            new_nodes.append(helper.make_node("Cast", [inner], [out.name], name=f"{out.name}_to_fp32_cast", to=FLOAT))
            report.casts += 1
    del g.node[:]
    g.node.extend(new_nodes)
    used = {x for n in g.node for x in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.value_info[:]
    m = shape_inference.infer_shapes(m)
    return m, report


def _retype_attributes(n, helper, numpy_helper, FLOAT, HALF) -> None:
    """An fp16 ``Cast``/``Constant``/``ConstantOfShape`` produces fp16 where it produced fp32."""
    if n.op_type == "Cast":
        for a in n.attribute:
            if a.name == "to" and a.i == FLOAT:
                a.i = HALF
    elif n.op_type in ("Constant", "ConstantOfShape"):
        for a in list(n.attribute):
            if a.name == "value" and a.t.data_type == FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
            elif a.name in ("value_float", "value_floats"):
                arr = np.array(a.f if a.name == "value_float" else list(a.floats), dtype=np.float16)
                n.attribute.remove(a)
                n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(arr)))
        if n.op_type == "ConstantOfShape" and not any(a.name == "value" for a in n.attribute):
            # without a value attribute ConstantOfShape makes float32 zeros (ONNX operator spec)
            n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float16))))
