"""Small torch helpers every stage shares: programs vs modules, example arguments, dynamic shapes, quiet tracing.

torch is imported lazily (``import edgemm`` stays light).
"""
from __future__ import annotations

import contextlib
import io
import linecache
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .lazy import lazy_import
from .errors import EdgemmError, one_line
from .iospec import IOSpec


def is_program(model) -> bool:
    """A ``torch.export.ExportedProgram`` (as opposed to an ``nn.Module``)."""
    torch = lazy_import("torch")
    return isinstance(model, torch.export.ExportedProgram)


def load_pt2(path: Path):
    """A user's ``.pt2`` (``torch.export.save``) named on the command line or in the user's own recipe: the user
    chose it, so it is loaded (it is unpickled: see edgemm.trust); a corrupt file is one line."""
    from .torchload import load_torch_program

    if not Path(path).is_file():
        raise EdgemmError(f"torch.export program {path} not found; save one with torch.export.save(ep, path)")
    return load_torch_program(path, trust_code=True, what=f"torch.export program {path}")


def run_module(module, feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """Call ``module`` positionally on ``feeds`` (in ``names`` order) under no_grad; its tensor outputs as arrays, in
    the order the exporters flatten them (see :func:`output_items`)."""
    torch = lazy_import("torch")
    out = call_module(module, [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names], names)
    items, _ = output_items(out, what=f"{type(module).__name__}.forward")
    return [o.numpy() for _, o in items]


def call_module(module, args: Sequence[Any], names: Sequence[str]):
    """``module(*args)`` under no_grad; an exception raised by the user's forward() is one EdgemmError line naming
    the inputs, the module and line it failed in, and (for a dtype mismatch) the dtype to pass."""
    torch = lazy_import("torch")
    try:
        with torch.no_grad():
            return module(*args)
    except (EdgemmError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the user's code on the user's inputs: their error, in one line (-v: the traceback)
        inputs = ", ".join(f"{n} {list(a.shape)} {str(a.dtype).replace('torch.', '')}" for n, a in zip(names, args))
        raise EdgemmError(call_failure(exc, module, inputs, f"{type(module).__name__}.forward")) from exc


def output_items(out, single: str = "output_0", what: str = "the model") -> tuple[list[tuple[str, Any]], list[str]]:
    """``([(name, tensor), ...], [names of None values left out])`` of a model's output, in torch's pytree order (the
    order torch.export and the ONNX exporters flatten outputs in). Names: a dict's / ModelOutput's keys, a
    namedtuple's fields, ``output_<i>`` for a top-level tuple or list, ``single`` for one tensor; nested values get
    dotted names (``hidden_states.0``). A value that is not a tensor (a string, a number) is one EdgemmError line:
    an exported graph returns tensors only."""
    torch = lazy_import("torch")
    items: list[tuple[str, Any]] = []
    dropped: list[str] = []

    def walk(value, name: str) -> None:
        if isinstance(value, torch.Tensor):
            items.append((name, value))
        elif value is None:
            dropped.append(name)
        elif isinstance(value, Mapping):  # dict, OrderedDict, transformers' ModelOutput (its non-None fields)
            for k, v in value.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
            for k in value._fields:
                walk(getattr(value, k), f"{name}.{k}" if name else k)
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                walk(v, f"{name}.{i}" if name else f"output_{i}")
        else:
            kind = type(value).__name__
            where = f"output {name!r}" if name else "its output"
            article = "an" if kind[:1].lower() in "aeiou" else "a"
            raise EdgemmError(f"{what} returns {article} {kind} as {where}; an exported graph returns tensors only: return it as "
                              f"a tensor (torch.tensor(...)) or leave it out of forward()'s result")

    walk(out, "")
    if items and items[0][0] == "" and len(items) == 1:
        items = [(single, items[0][1])]
    return items, dropped


_DTYPE_ERROR = re.compile(r"dtype|scalar type|Expected tensor for argument|expected .*(Float|Double|Long|Int)", re.I)


def call_failure(exc: BaseException, model, inputs: str, what: str) -> str:
    """The line for forward() raising on the example inputs (``inputs``: ``x [2, 4] float64, ...``): where in the
    user's model, and for a dtype mismatch the dtypes to pass."""
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


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its cause (or context), theirs ... each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def traceback_frames(exc: BaseException):
    """(frame, line number) of every traceback entry along the exception chain."""
    for e in exception_chain(exc):
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
    for frame, line in traceback_frames(exc):
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


def dynamic_shapes(spec: IOSpec):
    """``torch.export`` dynamic shapes for the spec's named dynamic axes (one Dim per axis name)."""
    torch = lazy_import("torch")
    dims: dict[str, Any] = {}
    shapes = []
    for t in spec.inputs:
        axes = {}
        for axis, name in t.dynamic_axes.items():
            if name not in dims:  # the IOSpec's range; the example feeds the axis at size 2 (a size-1 example freezes it)
                r = spec.axis_range(name)
                dims[name] = torch.export.Dim(name.replace("-", "_"), min=r.min, max=max(r.max, 2))
            axes[axis] = dims[name]
        shapes.append(axes or None)
    return tuple(shapes)


def example_args(spec: IOSpec, feeds: Mapping[str, np.ndarray]):
    """Torch tensors in input order with every dynamic axis of size >= 2 (a size-1 example freezes the axis)."""
    torch = lazy_import("torch")
    args = []
    for t in spec.inputs:
        a = np.asarray(feeds[t.name])
        for axis in t.dynamic_axes:
            if a.shape[axis] < 2:
                a = np.concatenate([a, a], axis=axis)
        args.append(torch.from_numpy(np.ascontiguousarray(a)))
    return tuple(args)


@contextlib.contextmanager
def quiet():
    """The exporters print progress banners and tracer warnings; keep them for --verbose only."""
    buf = io.StringIO()
    torch_log = logging.getLogger("torch")
    level = torch_log.level
    torch_log.setLevel(logging.CRITICAL)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        torch_log.setLevel(level)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Set torch's global intra-op thread count for a block, and restore it after."""
    torch = lazy_import("torch")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
