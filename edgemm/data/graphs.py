"""Sample files of a multi-graph model: one ``.npz`` serves every graph.

Keys are input (and label) names; where two graphs share a name, ``graph/name`` says whose it is
(``image/pixel_values``, ``text/input_ids``). A graph reads ``graph/name`` first, then ``name``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import SpecError
from ..iospec import IOSpec
from ..safeio import read_npz
from .datasets import SAMPLE_FIX, SAMPLE_KINDS


def graph_arrays(arrays: Mapping[str, np.ndarray], graph: str, spec: IOSpec) -> dict[str, np.ndarray]:
    """The arrays of one graph (its inputs and labelled heads, plus per-input extras such as ``name.sample_rate``)."""
    out: dict[str, np.ndarray] = {}
    prefix = f"{graph}/"
    for key, value in arrays.items():
        if key.startswith(prefix):
            out[key[len(prefix):]] = value
        elif "/" not in key:
            out.setdefault(key, value)
    return out


def check_shared_names(specs: Mapping[str, IOSpec], arrays: Mapping[str, np.ndarray], where: str) -> None:
    """A name several graphs take must be keyed ``graph/name`` in a sample file (else whose is it?)."""
    owners: dict[str, list[str]] = {}
    for g, spec in specs.items():
        for n in spec.input_names:
            owners.setdefault(n, []).append(g)
    for name, graphs in owners.items():
        if len(graphs) > 1 and name in arrays and not all(f"{g}/{name}" in arrays for g in graphs):
            raise SpecError(f"{where}: input {name!r} belongs to graphs {', '.join(graphs)}; key it per graph "
                            f"({', '.join(f'{g}/{name}' for g in graphs)})")


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file (or a folder of them, concatenated), never unpickling."""
    path = Path(path)
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise SpecError(f"sample data {path} not found (expected an .npz file or a directory of them); check the path")
    parts: dict[str, list] = {}
    for f in files:
        for k, v in read_npz(f, "sample file", allowed_kinds=SAMPLE_KINDS, error=SpecError, fix=SAMPLE_FIX).items():
            parts.setdefault(k, []).append(v)
    out = {}
    for k, v in parts.items():
        if len({(a.shape[1:], a.dtype) for a in v}) > 1:
            raise SpecError(f"{path}: {k!r} has different shapes or dtypes across its .npz files; {SAMPLE_FIX}")
        out[k] = v[0] if len(v) == 1 else np.concatenate(v)
    return out
