"""Why an export failed, in the user's terms: the op, the module path inside the user's model, the line of their
code, and what to do. The export stage (stages/export.py) turns exporter exceptions into one line with these
(``edgemm -v export`` shows the exporter's own traceback).

Situations an exported graph cannot hold, and inputs the model cannot take, are recognised:
- data-dependent control flow (``if x.sum() > 0:``): torch.export cannot pick a branch for every input;
- an op with no ONNX mapping (``torch.linalg.eigvalsh``): the ONNX exporters have no translation for it;
- a data-dependent output shape (``x[x > 0]``): an output whose size depends on the input values;
- an ONNX op a target cannot run (``torch.linalg.det`` -> ``Det``, which OpenVINO has no conversion for):
  :func:`target_rejects`, named with the torch op and module it came from (the exported program knows them);
- forward() failing on the example inputs (a float64 array into float32 weights, float token ids):
  ``edgemm.torchutil.call_failure``, with the dtype to pass (it runs the model, below the stages).
"""
from __future__ import annotations

import re
from typing import Any

from ..errors import one_line
from ..torchutil import exception_chain, module_path, traceback_frames, user_frame

VERBOSE = "`edgemm -v export` shows the exporter's traceback"
_OP_PATTERNS = (
    re.compile(r"No ONNX function found for <OpOverload\(op='([\w.:]+)', overload='(\w+)'\)>"),
    re.compile(r"Exporting the operator '([\w:.]+)' to ONNX opset version \d+ is not supported"),
    re.compile(r"target=torch\.ops\.([\w.]+)\]"),
)


def fx_node_origin(exc: BaseException) -> tuple[str | None, str | None]:
    """(op, module path) of the graph node the ONNX exporter failed on, from the node it was translating."""
    node = None
    for frame, _ in traceback_frames(exc):
        candidate = frame.f_locals.get("node")
        if candidate is not None and hasattr(candidate, "meta") and hasattr(candidate, "target"):
            node = candidate
    if node is None:
        return None, None
    op = op_name(node.target)
    original = node.meta.get("original_aten")  # the op the user's code called, before the exporter decomposed it
    if original is not None and op_name(original) != op:
        op = f"{op_name(original)} (decomposed to {op})"
    return op, node_module(node)


def op_name(target: Any) -> str:
    """``aten::linalg_eigh`` for an OpOverload/packet or a name such as ``aten._linalg_eigh.default``."""
    name = getattr(target, "name", None)
    text = name() if callable(name) else str(target)
    text = text.replace("torch.ops.", "")
    if "::" not in text and "." in text:
        ns, rest = text.split(".", 1)
        text = f"{ns}::{rest}"
    return re.sub(r"\.default$", "", text)


def node_module(node) -> str | None:
    """The module path an fx node came from (its ``nn_module_stack``), e.g. ``model.inner (EigInner)``."""
    stack = node.meta.get("nn_module_stack") if hasattr(node, "meta") else None
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    if not isinstance(path, str) or path.startswith("_empty"):
        return None
    path = re.sub(r"^L\['self'\]\.?", "", path).replace("._modules['", ".").replace("']", "")
    return module_path(path, str(cls).rsplit(".", 1)[-1])


def op_from_messages(exc: BaseException) -> str | None:
    for e in exception_chain(exc):
        for pattern in _OP_PATTERNS:
            m = pattern.search(str(e))
            if m:
                return op_name(m.group(1))
    return None


def is_data_dependent(exc: BaseException) -> bool:
    return any(type(e).__name__ in ("GuardOnDataDependentSymNode", "DataDependentOutputException")
               or "data-dependent" in str(e) for e in exception_chain(exc))


def trace_failure(exc: BaseException, model, what: str, shapes: str) -> str:
    """The line for a torch.export failure on the user's model."""
    where = user_frame(exc, model)
    at = f" in {where}" if where else ""
    if is_data_dependent(exc):
        return (f"{what} has data-dependent control flow{at}: the code branches on the values of a tensor, which an "
                "exported graph cannot do for every input; compute both branches and select with torch.where (or "
                f"torch.cond), or move the decision out of the model ({VERBOSE})")
    first = (one_line(exc) or type(exc).__name__)[:300]
    return (f"torch.export cannot trace {what} on example inputs ({shapes}){at}: {type(exc).__name__}: {first}; "
            f"make forward() run on such inputs ({VERBOSE})")


def onnx_failure(exc: BaseException, opset: int, what: str) -> str:
    """The line for an ONNX exporter failure: the op without a mapping and where it is in the user's model."""
    op, where = fx_node_origin(exc)
    op = op or op_from_messages(exc)
    at = f" in {where}" if where else ""
    if op is not None:
        return (f"the op {op}{at} of {what} has no ONNX mapping in opset {opset}: replace it with ops ONNX has, "
                "compute it outside the model (before or after), or register a translation for it "
                f"(torch.onnx.export(custom_translation_table=...)) ({VERBOSE})")
    first = (one_line(exc) or type(exc).__name__)[:300]
    return (f"the ONNX exporter cannot convert {what}: {type(exc).__name__}: {first}; try [export] exporter = \"legacy\" "
            f"or opset = 20, or simplify the model code at that point ({VERBOSE})")


def data_dependent_outputs(ep, output_names) -> str | None:
    """A line naming the first output of a torch.export program whose shape depends on input values (None: none)."""
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    outs = [n for n in ep.graph.nodes if n.op == "output"][0].args[0]
    for i, node in enumerate(outs):
        val = node.meta.get("val") if hasattr(node, "meta") else None
        shape = getattr(val, "shape", None)
        if shape is None:
            continue
        axes = [a for a, d in enumerate(shape) if free_unbacked_symbols(d)]
        if not axes:
            continue
        name = output_names[i] if i < len(output_names) else f"output {i}"
        source = _unbacked_source(node)
        return (f"output {name!r} has a data-dependent shape (axis {axes[0]}"
                + (f", from {source}" if source else "") + "): its size depends on the values of the inputs, which "
                "the targets cannot take; return a fixed-size tensor instead (e.g. torch.where(mask, x, 0) and the mask)")
    return None


def _unbacked_source(node) -> str | None:
    """The op (and its module) that made an output's size data-dependent: the earliest node on its way whose
    value has an unbacked size."""
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    order = {id(n): i for i, n in enumerate(node.graph.nodes)}
    todo, seen, found = [node], set(), []
    while todo:
        n = todo.pop()
        if id(n) in seen or not hasattr(n, "meta"):
            continue
        seen.add(id(n))
        shape = getattr(n.meta.get("val"), "shape", None)
        if n.op in ("call_function", "output") and shape is not None and any(free_unbacked_symbols(d) for d in shape):
            if n.op == "call_function":
                found.append(n)
            todo.extend(n.all_input_nodes)
    if not found:
        return None
    first = min(found, key=lambda n: order.get(id(n), 0))
    where = node_module(first)
    return f"{op_name(first.target)}" + (f" in {where}" if where else "")


# How targets say that they have no implementation of an ONNX op (OpenVINO's ONNX frontend, onnxruntime)
_REJECTED = (
    re.compile(r"No conversion rule found for operations: ([\w.\-]+(?:, [\w.\-]+)*)"),
    re.compile(r"Could not find an implementation for (\w+)\(\d+\) node"),
)


def rejected_ops(exc: BaseException) -> list[str]:
    """ONNX op types a target said it cannot run (``Det`` from OpenVINO's ``Det-18``), in the order named."""
    ops: list[str] = []
    for e in exception_chain(exc):
        for pattern in _REJECTED:
            for m in pattern.finditer(str(e)):
                for op in m.group(1).split(", "):
                    op = re.sub(r"-\d+$", "", op.strip()).rsplit(".", 1)[-1]
                    if op and op not in ops:
                        ops.append(op)
    return ops


def program_origin(program, onnx_op: str) -> str | None:
    """``aten::linalg_det in model.geometry.0 (Area)``: the torch op of an exported program an ONNX op type most
    likely came from (an aten op whose name holds the ONNX op's name: Det <- linalg_det, GridSample <- grid_sampler)."""
    graph = getattr(program, "graph", None)
    if graph is None:
        return None
    key = onnx_op.lower()
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        name = op_name(node.target)
        if key in name.split("::")[-1].replace("_", "").lower():
            where = node_module(node)
            return name + (f" in {where}" if where else "")
    return None


def target_rejects(exc: BaseException, target: str, what: str, program=None) -> str | None:
    """The line for a target that cannot convert or run an op of the exported ONNX (None: not that kind of failure)."""
    ops = rejected_ops(exc)
    if not ops:
        return None
    origin = program_origin(program, ops[0]) if program is not None else None
    more = f" (and {', '.join(ops[1:])})" if len(ops) > 1 else ""
    return (f"{target} cannot run the ONNX op {ops[0]}{more}" + (f" (from {origin})" if origin else "") + f" of {what}: "
            f"{target} has no implementation of it; compute that part outside the model, replace it with ops {target} "
            f"runs, or export without {target} (--target without it) (`edgemm -v export` shows {target}'s error)")
