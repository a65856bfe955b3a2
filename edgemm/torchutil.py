"""Small torch helpers every stage shares: programs vs modules, example arguments, dynamic shapes, quiet tracing.

torch is imported lazily (``import edgemm`` stays light).
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .lazy import lazy_import
from .errors import EdgemmError
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
        from .stages.export_errors import call_failure

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
