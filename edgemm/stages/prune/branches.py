"""Which modules belong to which modality branch, and which torch-pruning groups each branch owns.

A module belongs to branch ``X`` (an input name) when its output changes if input ``X`` changes and
does not change when any other input changes (measured with forward hooks on two perturbed runs
per input: no tracing of Python control flow needed). Modules that depend on several inputs are
``fusion``. A torch-pruning group (channels that must be removed together: a conv's outputs, the BN
after it, the next conv's inputs, ...) belongs to branch ``X`` when all its modules do; any group
that reaches across branches (e.g. the shared embedding width that meets in cross-attention) is
``fusion`` and stays intact unless the request names ``fusion``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ...lazy import lazy_import
from ...iospec import IOSpec
from .config import FUSION


def example_args(spec: IOSpec, batch: int = 2, seed: int = 0, feeds: Mapping[str, np.ndarray] | None = None):
    """Torch tensors in input order (real feeds when given, else random in the spec's shapes)."""
    torch = lazy_import("torch")
    rng = np.random.default_rng(seed)
    args = []
    for t in spec.inputs:
        if feeds is not None:
            a = np.asarray(feeds[t.name][:batch])
        else:
            shape = [batch if isinstance(d, str) else int(d) for d in t.shape]
            if np.issubdtype(np.dtype(t.dtype), np.integer):
                a = rng.integers(0, 2, size=shape).astype(t.dtype)
            else:
                a = rng.standard_normal(shape).astype(t.dtype)
        args.append(torch.from_numpy(np.ascontiguousarray(a)))
    return tuple(args)


def _module_outputs(model, args) -> dict[str, "object"]:
    torch = lazy_import("torch")
    seen: dict[str, object] = {}
    hooks = []

    def grab(name):
        def hook(_m, _i, out):
            t = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(t, torch.Tensor) and name not in seen:  # first call only (shared modules)
                seen[name] = t.detach().clone()
        return hook

    for name, m in model.named_modules():
        if name:
            hooks.append(m.register_forward_hook(grab(name)))
    try:
        with torch.no_grad():
            model(*args)
    finally:
        for h in hooks:
            h.remove()
    return seen


def module_branches(model, spec: IOSpec, feeds: Mapping[str, np.ndarray] | None = None) -> dict[str, str]:
    """Module name -> the input name it depends on alone, or ``"fusion"`` (several inputs / none)."""
    torch = lazy_import("torch")
    was_training = model.training
    model.eval()
    try:
        base_args = example_args(spec, feeds=feeds)
        base = _module_outputs(model, base_args)
        depends: dict[str, set[str]] = {n: set() for n in base}
        for i, t in enumerate(spec.inputs):
            args = list(base_args)
            a = args[i]
            args[i] = (a + 1) % 2 if not a.is_floating_point() else a * -1.5 + 0.7
            other = _module_outputs(model, tuple(args))
            for n, out in base.items():
                o = other.get(n)
                if o is None or o.shape != out.shape or not torch.equal(o, out):
                    depends[n].add(t.name)
    finally:
        model.train(was_training)
    return {n: (next(iter(d)) if len(d) == 1 else FUSION) for n, d in depends.items()}


def group_branch(group, names: Mapping[object, str], branches: Mapping[str, str]) -> str:
    """Branch of a torch-pruning group: the one branch all its named modules share, else ``fusion``.

    Functional ops (cat, add, reshape) and unwrapped parameters (e.g. a positional embedding) have
    no name and follow the modules around them."""
    found = {branches.get(names[dep.target.module], FUSION) for dep, _ in group if dep.target.module in names}
    return found.pop() if len(found) == 1 else FUSION


def group_members(group, names: Mapping[object, str]) -> list[str]:
    """Named modules whose output channels this group removes."""
    out = []
    for dep, _ in group:
        name = names.get(dep.target.module)
        if name and "out_channels" in getattr(dep.handler, "__name__", "") and name not in out:
            out.append(name)
    return out


def describe(branches: Mapping[str, str], inputs: Sequence[str]) -> dict[str, list[str]]:
    """Branch -> top-level module names (for the report and error messages)."""
    out: dict[str, list[str]] = {b: [] for b in (*inputs, FUSION)}
    for name, b in branches.items():
        parent = name.rsplit(".", 1)[0] if "." in name else None
        if parent is not None and branches.get(parent) == b:
            continue  # a child of an already listed module
        out.setdefault(b, []).append(name)
    return out
