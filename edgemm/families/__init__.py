"""Model families: how a model the user brings is recognised, loaded, named and split into graphs.

The seam: ``resolve_folder(path)`` for ``edgemm export DIR`` and
``resolve_module(obj, example_inputs, spec)`` for a live object (None: not a family model, the generic
nn.Module path applies). Both return an ``edgemm.resolved.ResolvedModel``.

Families live in ``edgemm/families/<name>/`` (Hugging Face CLIP, Wav2Vec2, Whisper's encoder, timm image
models) and come from the ``edgemm.families`` entry-point group (``edgemm.families.base.Family``).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import EdgemmError


def resolve_folder(path: Path, example_inputs=None, spec=None):
    """A model folder (save_pretrained, timm's config.json + weights, or a torch.save module) -> ResolvedModel."""
    from .folder import ModelFolder, load_pickled_module
    from .registry import call_family, describe, family_for_folder, family_for_module
    from .resolve import resolve_family

    folder = ModelFolder.read(path)
    family = family_for_folder(folder)
    if family is not None:
        model = call_family(family, "load", folder)
        return resolve_family(family, model, folder, example_inputs, spec,
                              source=f"model folder {path} ({family.name} family)", sha256=folder.sha256())
    pickled = folder.module_file() if folder.config is None else None
    if pickled is not None:
        model = load_pickled_module(pickled)  # only with the user's trust
        family = family_for_module(model)
        if family is None:
            raise EdgemmError(f"{pickled} holds a {type(model).__module__}.{type(model).__qualname__}, which no model family "
                              "recognises, so edgemm cannot tell its inputs; export it from Python with "
                              "edgemm.export(model, example_inputs={name: array}, output=...)")
        return resolve_family(family, model, None, example_inputs, spec,
                              source=f"torch.save module {pickled} ({family.name} family)",
                              sha256=folder.sha256(), name=Path(path).resolve().name)
    what = f"Hugging Face model_type {folder.model_type!r}" if folder.model_type else folder.describe()
    raise EdgemmError(f"no model family recognises the folder {path} ({what}); families: {'; '.join(describe())}. "
                      "Pass a recipe (.toml), a torch.export program (.pt2), or export the model from Python with "
                      "edgemm.export(model, example_inputs=...)")


def resolve_module(obj, example_inputs=None, spec=None):
    """A live model of a known family (or a model folder's path), or a plain module whose outputs have names (a dict,
    namedtuple, ModelOutput, nested) -> ResolvedModel; None for anything else (the generic nn.Module path of tensor
    and tuple outputs, recipes and .pt2 files)."""
    if isinstance(obj, (str, os.PathLike)):
        return resolve_folder(Path(obj), example_inputs, spec) if Path(obj).is_dir() else None
    from .registry import family_for_module
    from .resolve import resolve_family

    family = family_for_module(obj)
    if family is None:  # a plain module: its dict / namedtuple / ModelOutput outputs named by their keys
        from .resolve import resolve_generic

        return resolve_generic(obj, example_inputs, spec)
    source = f"python {type(obj).__module__}.{type(obj).__qualname__} ({family.name} family)"
    return resolve_family(family, obj, None, example_inputs, spec, source=source)
