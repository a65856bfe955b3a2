"""ONNX graph facts the quantizers need: quantizable nodes, modality branches, compact storage."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

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


# Ops whose int8 kernels consume DequantizeLinear outputs directly (ONNX Runtime's QDQ fusions on CPU; TensorRT and
# OpenVINO fuse a subset of them); data-movement ops run in int8 when a DQ -> op -> Q unit surrounds them.
INT8_KERNELS = {"Conv": (0, 1), "ConvTranspose": (0, 1), "MatMul": (0, 1), "Gemm": (0, 1), "Add": (0, 1), "Mul": (0, 1),
                "Concat": None, "Softmax": (0,), "Sigmoid": (0,), "AveragePool": (0,), "GlobalAveragePool": (0,),
                "LeakyRelu": (0,), "Where": (1, 2)}
MOVE_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "MaxPool", "Resize", "Gather", "Slice", "Split",
            "DepthToSpace", "SpaceToDepth")


def _data_inputs(node: onnx.NodeProto) -> list[str]:
    idx = INT8_KERNELS.get(node.op_type)
    ins = list(node.input) if idx is None else [node.input[i] for i in idx if i < len(node.input)]
    return [x for x in ins if x]


def _clamp_of(q: onnx.NodeProto, g) -> tuple[float, float] | None:
    """(lo, hi) when a QuantizeLinear's range starts exactly at 0 (zero-point at the bottom of its type): ORT's
    quantizer folds a Relu/Clip into such a pair, so removing the pair must keep the clamp. None otherwise."""
    inits = {t.name: t for t in g.initializer}
    if len(q.input) < 3 or q.input[1] not in inits or q.input[2] not in inits:
        return None
    scale = onnx.numpy_helper.to_array(inits[q.input[1]]).astype(np.float64).ravel()
    zp = onnx.numpy_helper.to_array(inits[q.input[2]])
    if scale.size != 1 or zp.size != 1:
        return None
    info = np.iinfo(zp.dtype)
    z = int(zp.ravel()[0])
    if z != info.min:
        return None
    return 0.0, float((info.max - z) * scale[0])


def drop_unconsumed_qdq(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Remove activation Q -> DQ pairs that no int8 kernel consumes: those around ops kept float (or without an int8
    kernel), and those on one input of an op whose other input stays float (a half-quantized op computes in float
    anyway, so its Q/DQ is rounding error plus two unfused kernels). Weight-only DQs (int8 storage) stay.
    Returns the model and the number of DequantizeLinear nodes removed."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    outputs = {o.name for o in g.output}
    removed = 0
    while True:
        producers = {o: n for n in g.node for o in n.output}
        consumers: dict[str, list] = defaultdict(list)
        for n in g.node:
            for x in n.input:
                consumers[x].append(n)

        def from_dq(x: str) -> bool:
            return x in producers and producers[x].op_type == "DequantizeLinear"

        def useful(dq: onnx.NodeProto) -> bool:
            if dq.output[0] in outputs:
                return True
            for c in consumers[dq.output[0]]:
                if c.op_type in INT8_KERNELS and dq.output[0] in _data_inputs(c) and all(from_dq(x) for x in _data_inputs(c)):
                    return True
                if c.op_type in MOVE_OPS and c.input[0] == dq.output[0] and consumers[c.output[0]] and \
                        all(u.op_type == "QuantizeLinear" for u in consumers[c.output[0]]):
                    return True
            return False

        drop = []
        for n in g.node:
            if n.op_type != "DequantizeLinear" or n.input[0] in inits:
                continue
            q = producers.get(n.input[0])
            if q is None or q.op_type != "QuantizeLinear" or useful(n):
                continue
            drop.append((n, q))
        if not drop:
            break
        rewire = {}
        dead = set()
        clips = []
        for dq, q in drop:
            clamp = _clamp_of(q, g)
            if clamp is None:
                rewire[dq.output[0]] = q.input[0]
            else:  # the pair stands for a Relu/Clip the quantizer folded into it: keep that clamp as a float Clip
                lo, hi = clamp
                base = f"{dq.output[0]}_clamp"
                g.initializer.extend([onnx.numpy_helper.from_array(np.array(lo, np.float32), base + "_min"),
                                      onnx.numpy_helper.from_array(np.array(hi, np.float32), base + "_max")])
                clips.append((dq, onnx.helper.make_node("Clip", [q.input[0], base + "_min", base + "_max"], [dq.output[0]],
                                                        name=base)))
            dead.add(id(dq))
        for n in g.node:
            n.input[:] = [rewire.get(x, x) for x in n.input]
        clip_for = {id(dq): clip for dq, clip in clips}
        keep = [clip_for.get(id(n), n) for n in g.node if id(n) not in dead or id(n) in clip_for]
        used = {x for n in keep for x in n.input} | outputs
        keep = [n for n in keep if not (n.op_type == "QuantizeLinear" and n.output[0] not in used)]
        del g.node[:]
        g.node.extend(keep)
        removed += len(drop)
    removed += _fold_small_weight_dq(g, outputs)
    removed += _float_graph_outputs(g, outputs)
    used = {x for n in g.node for x in n.input}
    live = [t for t in g.initializer if t.name in used or t.name in outputs]
    if len(live) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(live)
    return model, removed


SMALL_WEIGHT = 4096  # elements: below this a weight a float op reads is stored float (one DQ kernel less per run)


def _fold_small_weight_dq(g, outputs: set[str]) -> int:
    """A DequantizeLinear of a small constant that only float ops read (LayerNorm scale/bias, a Mul's constant) runs
    on every inference; store that constant dequantized instead. Large weights keep int8 storage (weight-only DQ)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list] = defaultdict(list)
    for n in g.node:
        for x in n.input:
            consumers[x].append(n)
    folded = []
    for n in g.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits or n.output[0] in outputs:
            continue
        users = consumers[n.output[0]]
        if not users or any(u.op_type in INT8_KERNELS and all(_is_dq(x, g) for x in _data_inputs(u)) for u in users):
            continue
        w = numpy_helper.to_array(inits[n.input[0]])
        if w.size > SMALL_WEIGHT or len(n.input) < 2 or n.input[1] not in inits:
            continue
        scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        zp = numpy_helper.to_array(inits[n.input[2]]).astype(np.int32) if len(n.input) > 2 and n.input[2] in inits else 0
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if np.ndim(scale) == 1 and w.ndim > 0:
            shape = [1] * w.ndim
            shape[axis % w.ndim] = -1
            scale = scale.reshape(shape)
            zp = zp.reshape(shape) if np.ndim(zp) == 1 else zp
        value = ((w.astype(np.int32) - zp) * scale).astype(np.float32)
        g.initializer.append(numpy_helper.from_array(value, n.output[0]))
        folded.append(n)
    for n in folded:
        g.node.remove(n)
    return len(folded)


def _is_dq(x: str, g) -> bool:
    return any(n.op_type == "DequantizeLinear" and n.output[0] == x for n in g.node)


def _float_graph_outputs(g, outputs: set[str]) -> int:
    """A graph output that leaves through Q -> DQ is rounded to 8 bits for nothing: the op before it writes float."""
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = defaultdict(list)
    for n in g.node:
        for x in n.input:
            consumers[x].append(n)
    done = 0
    for name in list(outputs):
        dq = producers.get(name)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in producers:
            continue
        q = producers[dq.input[0]]
        if q.op_type != "QuantizeLinear" or q.input[0] not in producers or consumers[q.output[0]] != [dq] \
                or _clamp_of(q, g) is not None:  # a folded Relu/Clip lives in that pair
            continue
        src = producers[q.input[0]]
        if len(consumers[q.input[0]]) != 1 or q.input[0] in outputs:
            continue  # the float tensor is read elsewhere too: keep the pair
        src.output[:] = [name if o == q.input[0] else o for o in src.output]
        g.node.remove(q)
        g.node.remove(dq)
        done += 1
    return done


# ------------------------------------------------------------------ tensors never quantized

# What makes a tensor an additive mask rather than an activation: a constant a mask is built from (HF's finfo.min,
# masked_fill's -1e9, BERT's -10000: <= -MASK_CONSTANT, or +-HUGE_CONSTANT, or not finite), or an activation measured
# beyond -MASK_EXTREME (or not finite). An 8-bit grid over such a range rounds every real value to one step. Measured
# activations between -1e4 and -1e9 alone are not taken for masks: calibration outliers reach them in real layers
# (tests/quantize/conftest.py), and the accuracy search handles those.
MASK_CONSTANT = 1e4
HUGE_CONSTANT = 1e30
MASK_EXTREME = 1e9
MASK_REASON = "mask-like: attention-mask / huge-range tensors are never quantized"
# A mask stops being one after these ops (Softmax turns the masked scores into [0, 1] weights; a weighted op or a
# normalisation mixes it into ordinary activations): they are kept float themselves, their outputs are not masks.
MASK_ENDS = frozenset(WEIGHTED_OPS) | {"Softmax", "LogSoftmax", "Sigmoid", "Exp", "Tanh", "Relu", "LayerNormalization",
                                       "BatchNormalization", "InstanceNormalization", "ReduceMax", "ArgMax", "TopK"}


def huge_constants(model: onnx.ModelProto) -> dict[str, float]:
    """Float constants (initializers, Constant / ConstantOfShape outputs) a mask is made of -> their extreme value:
    a value <= -MASK_CONSTANT, of magnitude >= HUGE_CONSTANT, or not finite."""
    from onnx import numpy_helper

    found: dict[str, float] = {}

    def check(name: str, value: np.ndarray) -> None:
        if value.dtype.kind != "f" or value.size == 0:
            return
        v = value.astype(np.float64)
        if not np.isfinite(v).all():
            found[name] = float(v[~np.isfinite(v)].flat[0])
        elif v.min() <= -MASK_CONSTANT or np.abs(v).max() >= HUGE_CONSTANT:
            found[name] = float(v.min() if v.min() <= -MASK_CONSTANT else v.max())

    for t in model.graph.initializer:
        check(t.name, numpy_helper.to_array(t))
    for n in model.graph.node:
        if n.op_type in ("Constant", "ConstantOfShape"):
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    check(n.output[0], numpy_helper.to_array(a.t))
                elif a.name in ("value_float", "value_floats"):
                    check(n.output[0], np.asarray([a.f] if a.name == "value_float" else list(a.floats), np.float32))
    return found


def extreme_tensors(ranges: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Activations whose measured minimum is at or below -MASK_EXTREME, or whose range is not finite -> the minimum."""
    return {name: float(lo) for name, (lo, hi) in ranges.items()
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= -MASK_EXTREME}


def mask_like(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> tuple[dict[str, str], set[str]]:
    """(nodes that must stay float -> why, the mask-like tensors). A mask is followed from where it starts (a mask
    constant, an extreme activation or graph input; ``ranges``: min/max per tensor measured on calibration samples)
    to where it ends (``MASK_ENDS``); every node that reads or writes it stays float. For an attention mask that is
    the chain from the int64 mask to the scores (Cast/Sub/Mul/Where/Expand/Reshape), the Add that applies it and the
    Softmax after it, in every layer that shares it."""
    masks = set(huge_constants(model)) | set(extreme_tensors(ranges))
    out: dict[str, str] = {}
    for n in model.graph.node:  # topologically sorted: a mask is followed forward in one pass
        if n.op_type in ("Constant", "ConstantOfShape"):
            continue
        if any(x in masks for x in n.input) or any(o in masks for o in n.output):
            out[n.name] = MASK_REASON
            if n.op_type not in MASK_ENDS:
                masks.update(o for o in n.output if o)
    return out, masks


def mask_like_nodes(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> dict[str, str]:
    """The nodes of :func:`mask_like` (node name -> why it stays float)."""
    return mask_like(model, ranges)[0]


# ------------------------------------------------------------------ Adds that are not residual

SCALAR_ADD_REASON = "an Add of a scalar constant (GELU's erf(x) + 1, x + eps): no int8 kernel, kept float"


def scalar_constant_adds(model: onnx.ModelProto) -> dict[str, str]:
    """Add nodes one of whose inputs is a one-element constant -> why they stay float. The Q/DQ schemes quantize
    ``Add`` for residual connections (two activations); an Add of a scalar has no int8 kernel to feed, and ONNX
    Runtime's quantizer then puts one Q/DQ pair on the constant that every such Add shares. OpenVINO 2026.4 runs
    GELU's erf form (``x * 0.5 * (erf(x / sqrt 2) + 1)``) wrongly with that pair on its ``+ 1``: a random-init
    Wav2Vec2 (feature encoder and encoder GELUs) fell to cosine 0.33 vs fp32 in OpenVINO while onnxruntime ran the
    same Q/DQ file at 0.999; with those Adds float, OpenVINO gives 0.999 too."""
    from onnx import numpy_helper

    scalars = {t.name for t in model.graph.initializer if int(np.prod(t.dims)) == 1}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if (a.name == "value" and a.type == onnx.AttributeProto.TENSOR and numpy_helper.to_array(a.t).size == 1) \
                        or a.name in ("value_float", "value_int"):
                    scalars.add(n.output[0])
    return {n.name: SCALAR_ADD_REASON for n in model.graph.node if n.op_type == "Add" and any(x in scalars for x in n.input)}



GROUPED_CONV_REASON = "a grouped (not depthwise) convolution: OpenVINO's int8 kernel for it is wrong, kept float"


def grouped_convs(model: onnx.ModelProto) -> dict[str, str]:
    """Grouped Conv nodes that are not depthwise (1 < group < input channels) -> why they stay float. OpenVINO
    2026.4's CPU plugin computes them wrongly in int8: a Conv1d 32 -> 32, groups 2, kernel 8 to 16 (Wav2Vec2's
    positional convolution) quantized with symmetric Q/DQ gave cosine 0.04-0.13 vs fp32 in OpenVINO and 0.9999 in
    onnxruntime on the same file (kernels <= 6, groups 1, depthwise, and 32 channels per group were right); in the
    random-init Wav2Vec2 it took the whole model to 0.954."""
    weights = {t.name: t for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        w = weights.get(n.input[1]) if len(n.input) > 1 else None
        if group > 1 and w is not None and len(w.dims) >= 2 and w.dims[1] > 1:  # dims[1]: input channels per group
            out[n.name] = GROUPED_CONV_REASON
    return out
