"""Model families: how a model the user brings is recognised, loaded, named and split into graphs.

The seam: ``resolve_folder(path)`` for ``edgemm export DIR`` and
``resolve_module(obj, example_inputs, spec)`` for a live object (None: not a family model, the generic
nn.Module path applies). Both return an ``edgemm.resolved.ResolvedModel``.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import EdgemmError


def resolve_folder(path: Path):
    raise EdgemmError(f"cannot export the folder {path}: no model family recognises it; pass a recipe (.toml), a "
                      "torch.export program (.pt2) or an nn.Module")


def resolve_module(obj, example_inputs=None, spec=None):
    return None
