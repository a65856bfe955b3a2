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
    """Call ``module`` positionally on ``feeds`` (in ``names`` order) under no_grad; outputs as arrays."""
    torch = lazy_import("torch")
    with torch.no_grad():
        out = module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names])
    out = (out,) if isinstance(out, torch.Tensor) else out
    return [o.numpy() for o in out]


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
