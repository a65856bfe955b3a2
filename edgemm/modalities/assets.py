"""Files a pre-processing reads (a ``tokenizer.json``, a vocabulary) travel inside the bundle.

``ship_assets`` copies every file an IOSpec's pre-processing names (relative to the folder the spec was written
for: a recipe's folder, a model folder) to ``layout.asset_path(graph, name)`` under the bundle root and returns
the spec with those bundle-relative paths, so ``Runtime.preprocess`` needs nothing but the bundle."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from ..errors import SpecError
from .registry import get_modality


def ship_assets(spec, source_dir, bundle_root, graph: str):
    """Copy the assets of ``spec``'s inputs from ``source_dir`` into ``bundle_root``; the spec naming the copies."""
    from ..layout import asset_path

    inputs = []
    for t in spec.inputs:
        pre = t.preprocessing
        files = get_modality(t.modality).assets(pre) if pre is not None else {}
        changes = {}
        for key, rel in files.items():
            src = Path(source_dir) / rel
            if not src.is_file():
                raise SpecError(f"input {t.name!r}: its {key} {src} is not a file; put it beside the recipe/model folder")
            dest_rel = asset_path(graph, rel)
            dest = Path(bundle_root) / dest_rel
            if src.resolve() != dest.resolve():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
            changes[key] = dest_rel
        inputs.append(dataclasses.replace(t, preprocessing=dataclasses.replace(pre, **changes)) if changes else t)
    return dataclasses.replace(spec, inputs=tuple(inputs))
