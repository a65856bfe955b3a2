"""The dual encoder's two-graph bundle: its recipe, its export and its zero-shot accuracy per artifact.

``export/seed_dual_encoder.toml`` describes its graphs in ``[graphs.<name>]`` tables (a ``factory`` plus the
graph's ``inputs`` / ``outputs`` in the recipe syntax); ``edgemm export`` reads them (edgemm.recipe) into one
bundle with fp32 (and ``--int8``) artifacts per graph and target, verified, the prompt tokenizer shipped in it.
This module is that export plus the zero-shot check. The pipeline budgets what it can measure per
graph (parity; embeddings have no labels); the accuracy that matters here, zero-shot top-1 on the evaluation
split, needs both graphs together: :func:`zero_shot_report` measures it from the bundle's artifacts (the text
graph embeds the class prompts once, the image graph every frame) and checks ``[zero_shot] max_drop``.

    python -m edgemm.zoo.seeds.dual_bundle export/seed_dual_encoder.toml -o build/seed_dual_encoder --int8
"""
from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import EdgemmError, RecipeError
from ...iospec import IOSpec
from . import captions, zero_shot

TABLES = ("model", "graphs", "data", "zero_shot", "export", "verify", "quantize")
OPTION_TABLES = ("export", "verify", "quantize")


@dataclass
class DualRecipe:
    path: Path
    name: str
    checkpoint: Path
    factories: dict[str, str]
    specs: dict[str, IOSpec]
    calibration: Path
    evaluation: Path
    tokenizer: Path
    max_drop: float
    options: dict = field(default_factory=dict)

    def build(self) -> dict:
        from ...usercode import import_callable

        return {g: import_callable(ref, "graph factory")(checkpoint=self.checkpoint) for g, ref in self.factories.items()}


def _need(table: dict, key: str, where: str):
    if key not in table:
        raise RecipeError(f"{where}: missing key {key!r}; see export/seed_dual_encoder.toml")
    return table[key]


def read_recipe(path) -> DualRecipe:
    """``export/seed_dual_encoder.toml`` -> DualRecipe; every problem is one RecipeError/SpecError line."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} not found; pass export/seed_dual_encoder.toml")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc}); fix the syntax") from exc
    unknown = sorted(set(raw) - set(TABLES))
    if unknown:
        raise RecipeError(f"{path}: unknown table(s) {', '.join(unknown)}; tables: {', '.join(TABLES)}")
    base = path.parent
    model, graphs, data, zs = (raw.get(k, {}) for k in ("model", "graphs", "data", "zero_shot"))
    if not isinstance(graphs, dict) or not graphs:
        raise RecipeError(f"{path}: [graphs.<name>] tables are missing; give one per graph (factory, inputs, outputs)")
    factories, specs = {}, {}
    for g, t in graphs.items():
        where = f"{path} [graphs.{g}]"
        factories[g] = _need(t, "factory", where)
        specs[g] = IOSpec.from_manifest({"inputs": _need(t, "inputs", where), "outputs": _need(t, "outputs", where)})
    return DualRecipe(
        path=path, name=_need(model, "name", f"{path} [model]"),
        checkpoint=base / _need(model, "checkpoint", f"{path} [model]"), factories=factories, specs=specs,
        calibration=base / _need(data, "calibration", f"{path} [data]"),
        evaluation=base / _need(zs, "evaluation", f"{path} [zero_shot]"),
        tokenizer=base / _need(zs, "tokenizer", f"{path} [zero_shot]"),
        max_drop=float(zs.get("max_drop", 0.01)),
        options={k: raw[k] for k in OPTION_TABLES if k in raw},
    )


def _model_level(t, arr: np.ndarray) -> np.ndarray:
    if t.preprocessing is not None and arr.dtype == np.uint8:
        from ...frontends.image import preprocess_image

        return preprocess_image(arr, t.preprocessing).astype(t.dtype)
    return np.ascontiguousarray(arr.astype(t.dtype))


def export(recipe_path, output, *, int8: bool = False, targets=None, threads: int | None = None):
    """Export the recipe's graphs into one bundle at ``output`` (``edgemm.export`` of the recipe: its
    ``[graphs.<name>]`` tables) -> Bundle; the same as ``edgemm export RECIPE -o OUTPUT``."""
    import edgemm

    read_recipe(recipe_path)  # the zero-shot tables checked before minutes of export
    return edgemm.export(Path(recipe_path), output=output, int8=int8, targets=targets, threads=threads)


def _frames(spec: IOSpec, split: dict) -> np.ndarray:
    t = spec.inputs[0]
    return _model_level(t, split[t.name])


def zero_shot_report(bundle_dir, recipe_path, *, limit: int | None = None, threads: int | None = None) -> dict:
    """Zero-shot top-1 on the recipe's evaluation split for the torch model and every (backend, precision) the
    bundle holds for both graphs; ``drop`` vs the fp32 artifact of the same backend, ``within_budget`` vs
    ``[zero_shot] max_drop``."""
    import edgemm
    from ...bundle import Bundle

    recipe = read_recipe(recipe_path)
    bundle = Bundle.open(bundle_dir)
    split = dict(np.load(recipe.evaluation))
    if limit:
        split = {k: (v[:limit] if np.ndim(v) else v) for k, v in split.items()}
    labels = split["digit"]
    tok = captions.load_tokenizer(recipe.tokenizer)
    image_spec = bundle.graph("image").spec
    frames = _frames(image_spec, split)

    import torch

    models = recipe.build()
    with torch.no_grad():
        classes = zero_shot.class_embeddings(lambda ids: models["text"](torch.from_numpy(ids)).numpy(), tok)
        ref = zero_shot.top1(models["image"](torch.from_numpy(frames)).numpy(), classes, labels)
    # the torch reference program is measured above from the recipe's modules (loading it would need --trust-code)
    have = [{(a.backend, a.precision) for a in bundle.graph(g).artifacts if a.backend != "torch"} for g in ("image", "text")]
    pairs = sorted(have[0] & have[1])
    rows = {}
    for backend, precision in pairs:
        with edgemm.load(bundle_dir, graph="text", backend=backend, precision=precision, threads=threads) as text_rt, \
                edgemm.load(bundle_dir, graph="image", backend=backend, precision=precision, threads=threads) as image_rt:
            tname, iname = text_rt.inputs[0].name, image_rt.inputs[0].name
            classes = zero_shot.class_embeddings(lambda ids: next(iter(text_rt.run({tname: ids}).values())), tok)
            emb = np.concatenate([next(iter(image_rt.run({iname: frames[s:s + 64]}).values()))
                                  for s in range(0, len(frames), 64)])
        rows[f"{backend}/{precision}"] = {"backend": backend, "precision": precision,
                                          "top1": zero_shot.top1(emb, classes, labels)}
    for row in rows.values():
        fp32 = rows.get(f"{row['backend']}/fp32")
        if fp32 is not None:
            row["drop"] = fp32["top1"] - row["top1"]
            row["within_budget"] = bool(row["drop"] <= recipe.max_drop + 1e-9)
    return {"split": str(recipe.evaluation.name), "samples": int(len(labels)), "max_drop": recipe.max_drop,
            "reference": {"backend": "torch", "precision": "fp32", "top1": ref}, "artifacts": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgemm.zoo.seeds.dual_bundle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", type=Path)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--target", default=None, help="comma-separated targets (default: the recipe's)")
    ap.add_argument("--json", type=Path, default=None, help="write the zero-shot report here")
    args = ap.parse_args(argv)
    try:
        export(args.recipe, args.output, int8=args.int8, targets=args.target)
        report = zero_shot_report(args.output, args.recipe)
    except EdgemmError as exc:
        print(f"edgemm: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    bad = [k for k, r in report["artifacts"].items() if r.get("within_budget") is False]
    if bad:
        print(f"edgemm: error: zero-shot top-1 drop over {report['max_drop']:g} for {', '.join(bad)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
