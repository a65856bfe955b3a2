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
  :func:`call_failure`, with the dtype to pass.
"""
from __future__ import annotations

import linecache
import re
from pathlib import Path
from typing import Any, Iterator

from ..errors import one_line

VERBOSE = "`edgemm -v export` shows the exporter's traceback"
_OP_PATTERNS = (
    re.compile(r"No ONNX function found for <OpOverload\(op='([\w.:]+)', overload='(\w+)'\)>"),
    re.compile(r"Exporting the operator '([\w:.]+)' to ONNX opset version \d+ is not supported"),
    re.compile(r"target=torch\.ops\.([\w.]+)\]"),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _frames(exc: BaseException):
    for e in _chain(exc):
        tb = e.__traceback__
        while tb is not None:
            yield tb.tb_frame, tb.tb_lineno
            tb = tb.tb_next


def _short(path: str) -> str:
    p = Path(path)
    return str(p.relative_to(Path.cwd())) if p.is_absolute() and Path.cwd() in p.parents else p.name


def _in_torch(filename: str) -> bool:
    import torch

    return Path(filename).resolve().is_relative_to(Path(torch.__file__).resolve().parent)


def module_path(path: str, cls: str) -> str:
    """``model.encoder.gate (Gate)``: the module's place in the user's model, as named_modules() names it."""
    return f"{'model' + ('.' + path if path else '')} ({cls})"


def user_frame(exc: BaseException, model) -> str | None:
    """The innermost ``forward`` of a module of ``model`` the failure passed through: ``model.gate (Gate) at
    file.py:11: `if x.sum() > 0:```; None when the failure happened outside the user's modules."""
    if model is None or not hasattr(model, "named_modules"):
        return None
    codes: dict[Any, list[tuple[str, Any]]] = {}
    for path, mod in model.named_modules():
        code = getattr(getattr(type(mod), "forward", None), "__code__", None)
        if code is not None:
            codes.setdefault(code, []).append((path, mod))
    found = None
    for frame, line in _frames(exc):
        entries = codes.get(frame.f_code)
        if not entries:
            continue
        me = frame.f_locals.get(frame.f_code.co_varnames[0]) if frame.f_code.co_varnames else None
        for path, mod in entries:
            if mod is me:
                if _in_torch(frame.f_code.co_filename):  # torch's own layer (Linear, Embedding): its path says enough
                    found = module_path(path, type(mod).__name__)
                    continue
                src = linecache.getline(frame.f_code.co_filename, line).strip()
                found = (f"{module_path(path, type(mod).__name__)} at {_short(frame.f_code.co_filename)}:{line}"
                         + (f": `{src[:120]}`" if src else ""))
    return found


def fx_node_origin(exc: BaseException) -> tuple[str | None, str | None]:
    """(op, module path) of the graph node the ONNX exporter failed on, from the node it was translating."""
    node = None
    for frame, _ in _frames(exc):
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
    for e in _chain(exc):
        for pattern in _OP_PATTERNS:
            m = pattern.search(str(e))
            if m:
                return op_name(m.group(1))
    return None


def is_data_dependent(exc: BaseException) -> bool:
    return any(type(e).__name__ in ("GuardOnDataDependentSymNode", "DataDependentOutputException")
               or "data-dependent" in str(e) for e in _chain(exc))


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
    for e in _chain(exc):
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


_DTYPE_ERROR = re.compile(r"dtype|scalar type|Expected tensor for argument|expected .*(Float|Double|Long|Int)", re.I)


def call_failure(exc: BaseException, model, inputs: str, what: str) -> str:
    """The line for forward() raising on the example inputs (``inputs``: ``x [2, 4] float64, ...``)."""
    where = user_frame(exc, model)
    at = f" in {where}" if where else ""
    first = (one_line(exc) or type(exc).__name__)[:300]
    if _DTYPE_ERROR.search(first):
        params = [p.dtype for p in model.parameters()] if hasattr(model, "parameters") else []
        weights = str(params[0]).replace("torch.", "") if params else "float32"
        fix = (f"pass example inputs of the dtypes forward() computes with: {weights} for values (the model's weights are "
               f"{weights}: x.astype(np.{weights})), int64 for token ids and indices")
    else:
        fix = "make forward() run on inputs of these shapes and dtypes, or pass example inputs it takes"
    return f"{what} fails on the example inputs ({inputs}){at}: {type(exc).__name__}: {first}; {fix} (`edgemm -v export` shows the traceback)"
