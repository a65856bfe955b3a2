"""The pipeline: resolve the model's graphs, then run the stages the config asks for into one bundle.

    per graph: reference -> prune -> onnx -> compile -> [plugin stages] -> ptq -> qat -> pruning-report -> parity
    then: manifest -> verify -> commit

Each stage is a unit (``edgemm.stages.base.Stage``) over one ``StageContext``; the list comes from
``edgemm.stages.registry.plan``. The pipeline owns the bundle (``BundleWriter``: a temp dir renamed
into place when complete). ``edgemm.export()`` and ``edgemm export`` are thin layers over
``edgemm.configure`` + ``run_pipeline``.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import layout
from .lazy import lazy_import
from .backends.registry import get_backend
from .bundle import MANIFEST, Bundle, BundleWriter, portable_file_ref, sha256_file
from .data.datasets import load_samples
from .data.generated import TrainingSplit
from .errors import EdgemmError, SpecError, on_command_line, setting, switch
from .iospec import IOSpec
from .log import logger, step
from .recipe import DataConfig, ExportConfig, ModelConfig, Recipe, VerifyConfig, load_recipe
from .resolved import GraphModel, ResolvedModel
from .stages.base import GraphState, StageContext
from .stages.export import spec_from_examples, spec_from_program
from .modelfile import graph_spec, is_model_file, is_model_file_path
from .torchutil import example_args, is_program, load_pt2


@dataclass(frozen=True)
class PipelineConfig:
    output: Path
    name: str
    export: ExportConfig
    data: DataConfig
    verify: VerifyConfig
    run_verify: bool = True
    int8: bool = False
    qat: bool = False
    prune: Any = None  # the pruning stage's config (None: no pruning)
    ptq: Any = None  # PTQConfig when int8
    calibration: Any = None  # a path/"synthetic" or an iterable of feeds (API)
    threads: int | None = None
    example_inputs: Mapping[str, np.ndarray] | None = field(default=None, hash=False)
    # the options seam (edgemm.options): section ("compile.openvino", "stages.<name>", ...) -> a typed options object
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    stages: tuple[str, ...] = ()  # extra stages to run by name (the edgemm.stages registry: plugin packages)


def resolve_model(model_or_path, example_inputs=None, spec: IOSpec | Mapping[str, IOSpec] | None = None) -> ResolvedModel:
    """A recipe .toml, a .pt2 program, a model folder, a live nn.Module/program, or ``{graph name: module}`` -> the
    graphs, their IOSpecs and the recipe. With several graphs ``example_inputs`` and ``spec`` are keyed by graph name.
    A module or folder of a known family (edgemm.families: Hugging Face, timm, ...) is resolved by its family."""
    if isinstance(model_or_path, Mapping):
        return _resolve_graphs(model_or_path, example_inputs, spec)
    if isinstance(model_or_path, (str, os.PathLike)) and Path(model_or_path).suffix == ".toml":
        recipe = load_recipe(model_or_path)
        if recipe.graphs:  # [graphs.<name>] tables: one bundle with a graph per table
            return _resolve_recipe_graphs(recipe, example_inputs, spec)
    from .families import resolve_module

    family = resolve_module(model_or_path, example_inputs, spec)  # None: not a family model (the generic path)
    if family is not None:
        if isinstance(model_or_path, (str, os.PathLike)) and Path(model_or_path).is_dir():
            family.recipe = replace(family.recipe, base_dir=Path(model_or_path))  # its tokenizer.json travels into the bundle
        return family
    if isinstance(spec, Mapping):
        raise SpecError("spec= is a mapping of graph names, but the model is a single module; pass one IOSpec")
    model, spec, recipe, source = _resolve_one(model_or_path, example_inputs, spec)
    sha = ""
    for ref in (recipe.model.checkpoint, recipe.model.path):
        if ref and recipe.resolve(ref).is_file():
            sha = sha256_file(recipe.resolve(ref))
            break
    return ResolvedModel({layout.MAIN: GraphModel(model, spec, example_inputs)}, recipe, source, sha)


def _resolve_one(model_or_path, example_inputs, spec: IOSpec | None, graph: str | None = None):
    recipe: Recipe | None = None
    of = f" for graph {graph!r}" if graph else ""
    if isinstance(model_or_path, (str, os.PathLike)) and graph is None:
        p = Path(model_or_path)
        if p.suffix == ".toml":
            recipe = load_recipe(p)
            model = recipe.build_model()
            spec = spec or recipe.spec
            source = f"recipe {p.name}"  # a name, not a host path: the bundle travels
            if is_model_file(model):
                return model, spec, recipe, source
        elif is_model_file_path(p):  # the user's fp32 ONNX: the reference itself; no torch involved
            model, graph_io = graph_spec(p)
            recipe = Recipe(ModelConfig(name=p.stem, path=str(p)), spec or graph_io)
            return model, spec or graph_io, recipe, f"{model.format} file {p.name}"
        elif p.suffix == ".pt2":
            model = load_pt2(p)
            source = f"torch.export program {p.name}"
            recipe = Recipe(ModelConfig(name=p.stem, path=str(p)), spec or spec_from_program(model))
            spec = spec or recipe.spec
        elif not p.exists():
            raise EdgemmError(f"{p} not found; pass a recipe (.toml), a torch.export program (.pt2), an ONNX model (.onnx) "
                              "or an nn.Module")
        else:  # (a model folder never gets here: edgemm.families resolves it, or says why not)
            raise EdgemmError(f"cannot export {p}: expected a recipe (.toml), a torch.export program (.pt2), an ONNX model "
                              "(.onnx) or a model folder")
    torch = lazy_import("torch", "export")
    if not (isinstance(model_or_path, (str, os.PathLike)) and graph is None):  # a live model (paths: above)
        if not (isinstance(model_or_path, torch.nn.Module) or is_program(model_or_path)):
            raise EdgemmError(f"cannot export a {type(model_or_path).__name__}{of}: pass an nn.Module, a .pt2 path, an .onnx path or "
                              "a recipe .toml path"
                              + (" (each graph of a multi-graph export is an nn.Module or a torch.export program)" if graph else ""))
        model = model_or_path
        source = f"python {type(model).__module__}.{type(model).__qualname__}"
    if spec is None:
        if is_program(model):
            spec = spec_from_program(model)
        elif example_inputs is None:
            raise SpecError(f"an nn.Module{of} needs spec=IOSpec(...) or example_inputs={{name: array}} to name its inputs")
        else:
            if not isinstance(example_inputs, Mapping):
                raise SpecError(f"example_inputs{of} must be a dict of input name -> array, not {type(example_inputs).__name__}")
            spec = spec_from_examples(model, {k: np.asarray(v) for k, v in example_inputs.items()})
    if isinstance(model, torch.nn.Module):
        model.eval()
    recipe = recipe or Recipe(ModelConfig(name=type(model).__name__.lower()), spec)
    return model, spec, recipe, source


def _resolve_graphs(models: Mapping, example_inputs, spec) -> ResolvedModel:
    if not models:
        raise SpecError("edgemm.export got an empty mapping of graphs; pass {graph name: nn.Module, ...}")
    for what, value in (("example_inputs", example_inputs), ("spec", spec)):
        if value is not None and not (isinstance(value, Mapping) and set(value) <= set(models)):
            raise SpecError(f"with several graphs, {what} must be keyed by graph name ({', '.join(map(str, models))}), "
                            f"e.g. {what}={{{next(iter(models))!r}: ...}}")
    graphs: dict[str, GraphModel] = {}
    for name, model in models.items():
        layout.check_graph_name(name)
        ex = (example_inputs or {}).get(name)
        m, s, _, _ = _resolve_one(model, ex, (spec or {}).get(name), graph=name)
        graphs[name] = GraphModel(m, s, ex)
    first = next(iter(graphs.values()))
    recipe = Recipe(ModelConfig(name="_".join(graphs)), first.spec)
    source = "python " + ", ".join(f"{g}: {type(gm.model).__module__}.{type(gm.model).__qualname__}" for g, gm in graphs.items())
    return ResolvedModel(graphs, recipe, source, "")


def _resolve_recipe_graphs(recipe: Recipe, example_inputs, spec) -> ResolvedModel:
    """A recipe's ``[graphs.<name>]`` -> the graphs (each factory's module, its spec) with the recipe's data and options."""
    specs = {name: g.spec for name, g in recipe.graphs.items()}
    if spec is not None and not isinstance(spec, Mapping):
        raise SpecError(f"{recipe.source} has several graphs ({', '.join(specs)}): pass spec= keyed by graph name, or none")
    specs.update(spec or {})
    resolved = _resolve_graphs(recipe.build_graphs(), example_inputs, specs)
    sha = ""
    if recipe.model.checkpoint and recipe.resolve(recipe.model.checkpoint).is_file():
        sha = sha256_file(recipe.resolve(recipe.model.checkpoint))
    return ResolvedModel(resolved.graphs, recipe, f"recipe {Path(recipe.source).name}", sha)


def _graph_state(name: str, gm: GraphModel, cfg: PipelineConfig, multi: bool, recipe: Recipe, shared: dict) -> GraphState:
    """A graph's data: evaluation samples, calibration source, examples, the training split."""
    spec = gm.spec
    eval_samples = calib = None
    quantize = (cfg.options or {}).get("quantize")
    limit = quantize.calibration_limit if quantize is not None else recipe.quantize.calibration_limit
    if multi:
        from .data.calibration import CalibrationSource, calibration_source
        from .data.datasets import samples_from_arrays
        from .data.graphs import graph_arrays

        if cfg.data.evaluation:
            arrays = graph_arrays(shared["evaluation"], name, spec)
            eval_samples = samples_from_arrays(arrays, spec, f"{cfg.data.evaluation} (graph {name!r})",
                                               Path(cfg.data.evaluation).parent, cfg.verify.eval_limit)
        if cfg.int8:
            if isinstance(cfg.calibration, (str, os.PathLike)) and str(cfg.calibration) != "synthetic":
                arrays = graph_arrays(shared["calibration"], name, spec)
                feeds = samples_from_arrays(arrays, spec, f"{cfg.calibration} (graph {name!r})", Path(cfg.calibration).parent, limit).feeds
                calib = calibration_source([feeds], spec, limit=limit)
                calib = CalibrationSource(calib.feeds, str(cfg.calibration), shared["calibration_sha256"])
            else:
                calib = calibration_source(cfg.calibration, spec, limit=limit)
    else:
        if cfg.int8:
            from .data.calibration import calibration_source

            calib = calibration_source(cfg.calibration, spec, limit=limit)
        if cfg.data.evaluation:
            with step(f"reading evaluation data {cfg.data.evaluation}"):
                eval_samples = load_samples(cfg.data.evaluation, spec, limit=cfg.verify.eval_limit)
    given = gm.example_inputs if gm.example_inputs is not None else (cfg.example_inputs if not multi else None)
    if given is not None:
        where = "example_inputs: " if not multi else f"example_inputs[{name!r}]: "
        examples = spec.check_feeds({k: np.asarray(v) for k, v in given.items()}, where)
    elif eval_samples is not None:
        examples = {k: v[:2] for k, v in eval_samples.feeds.items()}
    else:
        examples = spec.example_feeds(batch=2)
    training = TrainingSplit(cfg.data.training or cfg.data.calibration, spec) if not multi else TrainingSplit(None, spec)
    args = () if is_model_file(gm.model) else example_args(spec, examples)  # torch tensors, for a torch model only
    return GraphState(name, gm.model, spec, examples, args, eval_samples=eval_samples,
                      calibration=calib, training=training, deployed=gm.model, valid_examples=given is not None)


def _shared_data(resolved: ResolvedModel, cfg: PipelineConfig) -> dict:
    """Sample files read once for every graph of a multi-graph export (keys: input names or graph/input)."""
    from .data.graphs import check_shared_names, read_arrays

    specs = {g: gm.spec for g, gm in resolved.graphs.items()}
    shared: dict = {}
    if cfg.data.evaluation:
        with step(f"reading evaluation data {cfg.data.evaluation}"):
            shared["evaluation"] = read_arrays(cfg.data.evaluation)
        check_shared_names(specs, shared["evaluation"], str(cfg.data.evaluation))
    if cfg.int8 and isinstance(cfg.calibration, (str, os.PathLike)) and str(cfg.calibration) != "synthetic":
        shared["calibration"] = read_arrays(cfg.calibration)
        check_shared_names(specs, shared["calibration"], str(cfg.calibration))
        p = Path(cfg.calibration)
        shared["calibration_sha256"] = sha256_file(p) if p.is_file() else None
    return shared


def run_pipeline(resolved: ResolvedModel, cfg: PipelineConfig) -> Bundle:
    from contextlib import nullcontext

    from .distributed import TRAINING_STAGES, is_follower, ranks_wanted, run_ranked, world_info
    from .stages.registry import plan

    if ranks_wanted():  # launched by torchrun: rank 0 writes, the other ranks take part in the fine-tunes only
        return run_ranked(run_pipeline, resolved, cfg)
    follower = is_follower()
    for t in cfg.export.targets:
        backend = get_backend(t)
        if backend.device == "cpu":  # GPU targets build on their device from the ONNX written here
            backend.require()
    stages = plan(tuple(cfg.stages))
    multi = len(resolved.graphs) > 1
    if multi and (cfg.prune is not None or cfg.qat):
        raise EdgemmError(f"{setting('prune')} and {switch('qat')} fine-tune one model; a multi-graph export takes neither yet: "
                          "export the graph to fine-tune on its own, or drop them")
    shared = _shared_data(resolved, cfg) if multi else {}
    manifest_extra: dict = {}
    reports: dict = {}
    notes: list = []
    states: list[GraphState] = []
    with (nullcontext() if follower else BundleWriter(cfg.output)) as w:
        for name, gm in resolved.graphs.items():
            g = _graph_state(name, gm, cfg, multi, resolved.recipe, shared)
            ctx = StageContext(cfg, w, g, manifest_extra, reports, notes, resolved.source, resolved.recipe)
            for stage in stages:
                if stage.wanted(ctx) and (not follower or stage.name in TRAINING_STAGES):
                    _run_stage(stage, ctx)
            states.append(g)
        if follower:  # a rank != 0 writes nothing; its result is rank 0's (edgemm.distributed)
            return None
        if "pruning" in reports:
            reports["pruning"].update(world_info())
        for key, data in reports.items():
            w.write_json(layout.report_path(key), data)
        manifest = _manifest(resolved, cfg, states, _copy_evaluation(w, cfg))
        manifest.update(manifest_extra)
        for key in reports:
            manifest["reports"][key] = layout.report_path(key)
        int8_results = [r for g in states for r in g.int8_results]
        if int8_results:
            from .stages.quantize import speed_report

            speed = speed_report(int8_results)
            if speed is not None:
                w.write_json(layout.report_path("speed"), speed)
                manifest["reports"]["speed"] = layout.report_path("speed")
        manifest["model"]["sha256"] = manifest["model"]["sha256"] or sha256_file(w.path(layout.reference_path(states[0].name)))
        result = None
        if cfg.run_verify:
            from .stages.verify import verify as run_verify

            onnx_only = [g for g in states if is_model_file(g.model)]
            if onnx_only:  # the reference's accuracy, for verify to read (it runs no torch model here)
                from .trust import untrust_root

                _write_onnx_reference(w, manifest, onnx_only, cfg)
                untrust_root(w.tmp)  # no torch program to load: verify compares with the reference outputs stored
            # A provisional manifest, so that verify's timing workers can open the staged bundle; commit rewrites it.
            w.write_json(MANIFEST, w.full_manifest(manifest))
            staged = Bundle.open(w.tmp, verify_hashes=False)
            result = run_verify(staged, samples={g.name: g.eval_samples for g in states},
                                reference_module={g.name: None if is_model_file(g.model) else g.module for g in states},
                                threads=cfg.threads, write=False, **({"trust_code": False} if onnx_only else {}))
            if onnx_only and result.accuracy is not None:
                result.accuracy["reference"].update(_onnx_reference_label(onnx_only[0]))
            for key, data in result.reports().items():
                w.write_json(layout.report_path(key), data)
                manifest["reports"][key] = layout.report_path(key)
            result.raise_on_breach()
        bundle = w.commit(manifest)
    logger.info("bundle written to %s", bundle.root)
    pruned = any(g.pruned is not None for g in states)
    if int8_results:
        from .stages.quantize import slower_line

        for r in int8_results:
            line = slower_line(r, pruned=pruned)
            if line:
                logger.warning("note: %s", line)
    for line in notes:
        logger.warning("note: %s", line)
    for g in states:
        if g.pruned is not None:
            from .stages.prune import check_budget

            check_budget(g.pruned.report, f"the bundle at {bundle.root}")
    _raise_budget(bundle, int8_results, cfg)
    return bundle


def _onnx_reference_label(g: GraphState) -> dict:
    from .stages.units import onnx_backend

    return {"backend": onnx_backend(), "precision": "fp32", "artifact": layout.onnx_path(g.name)}


def _write_onnx_reference(w, manifest: dict, states: list[GraphState], cfg: PipelineConfig) -> None:
    """reports/accuracy.json with the reference's metrics (the fp32 ONNX's, by ONNX Runtime) before verify: verify reads
    the reference's accuracy from it when it runs no reference model (the PTQ stage measured them, or they are measured
    here). Verify rewrites the report."""
    from .stages.units import onnx_reference_metrics

    metrics = {}
    for g in states:
        if g.eval_samples is None or not g.eval_samples.labels:
            continue
        if g.reference_metrics is None:
            ctx = StageContext(cfg, w, g)
            g.reference_metrics = onnx_reference_metrics(ctx)
        metrics.update(g.reference_metrics or {})
    if metrics:
        w.write_json(layout.report_path("accuracy"), {"reference": {**_onnx_reference_label(states[0]), "metrics": metrics},
                                                       "ablation": {}})
        manifest["reports"]["accuracy"] = layout.report_path("accuracy")


def _run_stage(stage, ctx: StageContext) -> None:
    """Run one stage; a plugin stage's own failure is reported as the plugin's (one line), never as edgemm's."""
    from .stages.units import BUILTIN

    if stage in BUILTIN:
        stage.run(ctx)
        return
    try:
        stage.run(ctx)
    except (EdgemmError, KeyboardInterrupt, OSError):
        raise
    except Exception as exc:
        origin = f"{type(stage).__module__}.{type(stage).__qualname__}"
        raise EdgemmError(f"stage {stage.name!r} ({origin}, a plugin) failed: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:300]}; fix or uninstall that plugin, or export without "
                          f"{'--stage ' + stage.name if on_command_line() else f'stages=[{stage.name!r}]'}") from exc


EVALUATION_COPY_MAX = 64 * 2**20  # evaluation data up to this size travels inside the bundle


def _copy_evaluation(w: BundleWriter, cfg: PipelineConfig) -> str | None:
    """The evaluation file copied into the bundle (``data/evaluation.npz``), so that ``edgemm verify`` and ``bench``
    find it wherever the bundle goes; None when there is none or it is too large (the manifest names it, and
    verify then takes --eval)."""
    src = Path(cfg.data.evaluation) if cfg.data.evaluation else None
    if src is None or not src.is_file():
        return None
    if src.stat().st_size > EVALUATION_COPY_MAX:
        logger.info("evaluation data %s (%.0f MB) stays outside the bundle: `edgemm verify` on another machine needs --eval",
                    src.name, src.stat().st_size / 2**20)
        return None
    rel = f"{layout.folder(layout.MAIN, 'data')}/evaluation{src.suffix}"
    shutil.copyfile(src, w.path(rel))
    return rel


def _manifest(resolved: ResolvedModel, cfg: PipelineConfig, states: list[GraphState], evaluation_copy: str | None = None) -> dict:
    vcfg = cfg.verify
    mc = resolved.recipe.model
    calib = [g.calibration for g in states if g.calibration is not None]
    eval_n = [len(g.eval_samples) for g in states if g.eval_samples is not None]
    first = states[0]
    return {
        "model": {"name": cfg.name, "source": resolved.source, "sha256": resolved.sha256 or "",
                  # how to rebuild the user's original nn.Module (the benchmark baseline), when it came from a factory
                  "factory": mc.factory,
                  # a zoo checkpoint as edgemm:<path in the package>, any other by its name (model.sha256 is its hash)
                  "checkpoint": portable_file_ref(resolved.recipe.resolve(mc.checkpoint)) if mc.checkpoint else None},
        "graphs": {g.name: g.entry for g in states},
        "calibration": calib[0].manifest_entry(cfg.ptq.method) if calib
        else {"source": None, "sha256": None, "samples": 0, "method": None},
        "evaluation": {
            "source": evaluation_copy or (Path(cfg.data.evaluation).name if cfg.data.evaluation else None),
            "sha256": sha256_file(Path(cfg.data.evaluation)) if cfg.data.evaluation and Path(cfg.data.evaluation).is_file() else None,
            "samples": eval_n[0] if eval_n else 0,
        },
        "export": first.export_info if len(states) == 1 else {g.name: g.export_info for g in states},
        "verify": {"cosine_min": vcfg.cosine_min, "cosine_min_fp16": vcfg.cosine_min_fp16,
                   "cosine_min_int8": vcfg.cosine_min_int8, "max_abs": vcfg.max_abs, "batch": vcfg.batch},
        "reports": {},
    }


def _raise_budget(bundle: Bundle, results, cfg: PipelineConfig) -> None:
    missed = [r for r in results if r.budget_met is False]
    if not missed:
        return
    from .stages.quantize import BudgetNotMet

    r = min(missed, key=lambda r: r.candidate.drop)
    raise BudgetNotMet(
        f"INT8 accuracy budget {cfg.ptq.max_drop}{' relative' if cfg.ptq.relative else ''} not met for "
        f"{', '.join(x.target for x in missed)}: best drop {max(x.candidate.drop for x in missed):.4f} with "
        f"{sum(k['nodes'] for k in r.kept_float)} nodes kept float; the bundle at {bundle.root} holds that best model "
        f"(see reports/accuracy.json); raise {setting('max_drop')}{'' if cfg.qat else ' or use ' + switch('qat')}"
    )
