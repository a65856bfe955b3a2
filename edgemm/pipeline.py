"""The pipeline: resolve the model, then run the stages a config asks for into one bundle.

    export (torch -> reference .pt2 + fp32 ONNX) -> prune -> compile (per target) -> quantize (PTQ)
    -> QAT -> parity samples + manifest -> verify -> commit

The pipeline owns the bundle (``BundleWriter``: a temp dir renamed into place when complete);
each stage takes artifacts and returns artifacts. ``edgemm.export()`` and ``edgemm export`` are
thin layers over ``run_pipeline``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .lazy import lazy_import
from .backends.base import version_of
from .backends.registry import get_backend
from .bundle import FORMAT_VERSION, MANIFEST, Artifact, Bundle, BundleWriter, sha256_file
from .data.datasets import Samples, load_samples
from .data.generated import TrainingSplit
from .errors import EdgemmError, SpecError
from .iospec import IOSpec
from .log import logger, step
from .recipe import DataConfig, ExportConfig, ModelConfig, Recipe, VerifyConfig, load_recipe
from .stages.export import ONNX_PATH, PARITY_SAMPLES, REFERENCE_PATH, export_onnx, export_reference, spec_from_examples, spec_from_program
from .torchutil import example_args, is_program, load_pt2, run_module
from .version import __version__

PARITY_REFERENCE = "data/parity_reference.npz"
PARITY_REFERENCE_PRUNED = "data/parity_reference.pruned.npz"


@dataclass
class ResolvedModel:
    """The user's model and everything known about where it came from."""

    model: Any  # nn.Module or torch.export.ExportedProgram
    spec: IOSpec
    recipe: Recipe
    source: str
    sha256: str

    @property
    def module(self):
        """A callable torch module (a program's module for a .pt2)."""
        return self.model.module() if is_program(self.model) else self.model


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
    # the options seam (edgemm.options): section ("compile.openvino", "stages.ort-format", ...) -> a typed options object
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    stages: tuple[str, ...] = ()  # extra stages to run by name (the edgemm.stages registry), e.g. ("ort-format",)


def resolve_model(model_or_path, example_inputs=None, spec: IOSpec | None = None) -> ResolvedModel:
    """A recipe .toml, a .pt2 program or a live nn.Module/program -> the model, its IOSpec and its recipe."""
    torch = lazy_import("torch", "export")
    recipe: Recipe | None = None
    if isinstance(model_or_path, (str, os.PathLike)):
        p = Path(model_or_path)
        if p.suffix == ".toml":
            recipe = load_recipe(p)
            model = recipe.build_model()
            spec = spec or recipe.spec
            source = f"recipe {p}"
        elif p.suffix == ".pt2":
            model = load_pt2(p)
            source = f"torch.export program {p}"
            recipe = Recipe(ModelConfig(name=p.stem, path=str(p)), spec or spec_from_program(model))
            spec = spec or recipe.spec
        elif not p.exists():
            raise EdgemmError(f"{p} not found; pass a recipe (.toml), a torch.export program (.pt2) or an nn.Module")
        else:
            raise EdgemmError(f"cannot export {p}: expected a recipe (.toml) or a torch.export program (.pt2)")
    elif isinstance(model_or_path, torch.nn.Module) or is_program(model_or_path):
        model = model_or_path
        source = f"python {type(model).__module__}.{type(model).__qualname__}"
    else:
        raise EdgemmError(f"cannot export a {type(model_or_path).__name__}: pass an nn.Module, a .pt2 path or a recipe .toml path")
    if spec is None:
        if is_program(model):
            spec = spec_from_program(model)
        elif example_inputs is None:
            raise SpecError("an nn.Module needs spec=IOSpec(...) or example_inputs={name: array} to name its inputs")
        else:
            spec = spec_from_examples(model, {k: np.asarray(v) for k, v in example_inputs.items()})
    if isinstance(model, torch.nn.Module):
        model.eval()
    recipe = recipe or Recipe(ModelConfig(name=type(model).__name__.lower()), spec)
    sha = ""
    for ref in (recipe.model.checkpoint, recipe.model.path):
        if ref and recipe.resolve(ref).is_file():
            sha = sha256_file(recipe.resolve(ref))
            break
    return ResolvedModel(model, spec, recipe, source, sha)


def _prune(resolved: ResolvedModel, cfg: PipelineConfig, eval_samples: Samples | None, train: Samples | None):
    """The prune stage: the user's module -> a physically smaller copy, fine-tuned on the training split."""
    from .stages.prune import prune_model

    if is_program(resolved.model):
        raise EdgemmError("a torch.export program (.pt2) cannot be pruned: its graph is frozen; pass the nn.Module instead "
                          "(a recipe [model] factory, or edgemm.export(module, ...) from Python)")
    if train is None and (cfg.prune.epochs or cfg.prune.finetune_minutes):
        raise EdgemmError("--prune fine-tunes on training data: set [data] training (or calibration) in the recipe, or pass --calib")
    with step(f"pruning ({', '.join(f'{k}={v}' for k, v in cfg.prune.ratios.items()) or cfg.prune.sparsity}; "
              f"fine-tuning on {len(train) if train is not None else 'no'} samples)"):
        return prune_model(resolved.model, resolved.spec, cfg.prune, train=train, evaluation=eval_samples,
                           progress=lambda msg: logger.info("  %s", msg))


def _pruning_report(w: BundleWriter, resolved: ResolvedModel, pruned, cfg: PipelineConfig, args, int8_results) -> dict:
    """reports/pruning.json: the pruning stage's report + file size, latency per CPU target, accuracy after INT8."""
    import tempfile

    from .stages.prune import pruning_report
    from .stages.quantize.ptq import compare_latency

    report = dict(pruned.report)
    with tempfile.TemporaryDirectory(prefix="edgemm-prune-") as tmp:
        original = Path(tmp) / "original.onnx"
        with step("exporting the unpruned model to ONNX for the pruning report"):
            export_onnx(resolved.model, args, resolved.spec, original, cfg.export)
        latency = {}
        one = {k: v[:1].numpy() for k, v in zip(resolved.spec.input_names, args)}
        threads = cfg.threads or 2
        for target in cfg.export.targets:
            backend = get_backend(target)
            if backend.device != "cpu" or not backend.runs("onnx") or not backend.availability().available:
                continue
            with step(f"timing unpruned vs pruned fp32 on {target} (batch 1, {threads} threads, interleaved)"):
                before, after = compare_latency(target, resolved.spec, original, "fp32", w.path(ONNX_PATH), "fp32", one, threads)
            latency[target] = {"before": before, "after": after, "batch": 1, "threads": threads}
        size = (original.stat().st_size, w.path(ONNX_PATH).stat().st_size)
    accuracy = {k: v for k, v in report.get("accuracy", {}).items()}
    int8 = {}
    for r in int8_results:
        for head, v in (r.candidate.metrics or {}).items():
            int8[head] = min(v, int8.get(head, 1.0))  # the worst target
    if int8:
        accuracy["after_int8"] = int8
    keep = {k: report[k] for k in ("request", "branches", "groups", "finetune", "sparsity") if k in report}
    params, flops = report.get("params") or {}, report.get("flops") or {}
    return pruning_report(**keep, params=(params.get("before"), params.get("after")), flops=(flops.get("before"), flops.get("after")),
                          size_bytes=size, latency_ms=latency, accuracy=accuracy, max_drop=(report.get("budget") or {}).get("max_drop"))


def run_pipeline(resolved: ResolvedModel, cfg: PipelineConfig) -> Bundle:
    spec = resolved.spec
    for t in cfg.export.targets:
        backend = get_backend(t)
        if backend.device == "cpu":  # GPU targets build on their device from the ONNX written here
            backend.require()
    calib_src = None
    if cfg.int8:
        from .data.calibration import calibration_source

        calib_src = calibration_source(cfg.calibration, spec, limit=resolved.recipe.quantize.calibration_limit)
    vcfg = cfg.verify
    eval_samples: Samples | None = None
    if cfg.data.evaluation:
        with step(f"reading evaluation data {cfg.data.evaluation}"):
            eval_samples = load_samples(cfg.data.evaluation, spec, limit=vcfg.eval_limit)
    if cfg.example_inputs is not None:
        examples = spec.check_feeds({k: np.asarray(v) for k, v in cfg.example_inputs.items()}, "example_inputs: ")
    elif eval_samples is not None:
        examples = {k: v[:2] for k, v in eval_samples.feeds.items()}
    else:
        examples = spec.example_feeds(batch=2)
    args = example_args(spec, examples)
    onnx_backend = _onnx_backend()

    with BundleWriter(cfg.output) as w:
        # export: the user's original model, kept as the fp32 reference
        with step("saving the fp32 torch reference (torch.export)"):
            program = export_reference(resolved.model, args, spec, w.path(REFERENCE_PATH))
        w.add_artifact(Artifact(REFERENCE_PATH, "torch-export", "fp32", _reference_name(), _reference_name(), toolchain={"torch": version_of("torch") or "?"}))
        deployed = resolved.model  # what the ONNX is exported from (the pruned model when pruning)
        training = TrainingSplit(cfg.data.training or cfg.data.calibration, spec)  # pruning and QAT share one read
        pruned = None
        if cfg.prune is not None:
            pruned = _prune(resolved, cfg, eval_samples, training.read())
            deployed = pruned.module
        with step(f"exporting ONNX (opset {cfg.export.opset}, {cfg.export.exporter} exporter)"):
            info = export_onnx(deployed, args, spec, w.path(ONNX_PATH), cfg.export,
                               program=program if deployed is resolved.model else None)
        logger.info("  %s: %d nodes (%d before onnxslim), exporter %s", ONNX_PATH, info["nodes"], info["nodes_before_slim"], info["exporter"])
        if info["rewritten_attention"]:
            logger.info("  attention exported batch-first with split heads: %s ([export] rewrite_attention = false keeps torch's graph)",
                        ", ".join(info["rewritten_attention"]))
        w.add_artifact(Artifact(ONNX_PATH, "onnx", "fp32", onnx_backend, onnx_backend,
                                toolchain={"torch": version_of("torch") or "?", "onnx": version_of("onnx") or "?",
                                           "onnxruntime": version_of("onnxruntime") or "?", "onnxslim": version_of("onnxslim") or "?"},
                                extra={"exporter": info["exporter"], "opset": info["opset"], "nodes": info["nodes"],
                                       **({"rewritten_attention": info["rewritten_attention"]} if info["rewritten_attention"] else {})}))
        # compile: every target's fp32 artifacts
        from .stages.compile import compile_targets

        compile_targets(w, ONNX_PATH, spec, cfg.export.targets, cfg.export.fp16, onnx_backend)
        # quantize (PTQ), then QAT
        int8_results, every_int8 = [], []
        if cfg.int8:
            from .stages.quantize import add_int8_artifacts, reference_metrics

            reference = reference_metrics(_module(deployed), spec, eval_samples)
            int8_results = add_int8_artifacts(w, w.path(ONNX_PATH), spec, calib_src, eval_samples, cfg.export.targets,
                                              replace(cfg.ptq, parity_floor=vcfg.cosine_min_int8), model=deployed, reference=reference)
            every_int8 = list(int8_results)
            if cfg.qat:
                from .stages.qat import add_qat_artifacts

                # With --qat the QAT artifacts answer to the budget; PTQ ones stay for comparison.
                int8_results = add_qat_artifacts(w, deployed, spec, args, cfg, calib_src, eval_samples, int8_results, reference,
                                                  resolved.recipe, training)
                every_int8 += int8_results
        if pruned is not None:
            w.write_json("reports/pruning.json", _pruning_report(w, resolved, pruned, cfg, args, every_int8))
        # parity samples + the reference's outputs on them (verify compares without running the reference's code)
        if eval_samples is not None:
            parity = eval_samples.take(slice(0, vcfg.parity_samples)).feeds
            parity_kind = f"first {min(vcfg.parity_samples, len(eval_samples))} samples of {cfg.data.evaluation}"
        elif calib_src is not None and not calib_src.synthetic:
            from .stages.quantize import held_out

            _, held, parity_kind = held_out(calib_src, None)  # the samples INT8 was checked on, not calibrated on
            parity = {k: v[:vcfg.parity_samples] for k, v in held.items()}
        else:
            parity = spec.example_feeds(batch=vcfg.parity_samples, seed=1)
            parity_kind = "random feeds (no evaluation data given)"
        np.savez_compressed(w.path(PARITY_SAMPLES), **parity)
        ref_out = run_module(_module(resolved.model), parity, spec.input_names)
        np.savez_compressed(w.path(PARITY_REFERENCE), **dict(zip(spec.output_names, ref_out)))
        if pruned is not None:  # pruned artifacts compute the pruned model: parity against it, accuracy against the original
            np.savez_compressed(w.path(PARITY_REFERENCE_PRUNED),
                                **dict(zip(spec.output_names, run_module(pruned.module, parity, spec.input_names))))
            for art in w.artifacts:
                if art.path != REFERENCE_PATH:
                    art.extra["pruned"] = True
        manifest = _manifest(resolved, cfg, calib_src, eval_samples, parity_kind, info)
        if int8_results:
            from .stages.quantize import speed_report

            speed = speed_report(int8_results)
            if speed is not None:
                w.write_json("reports/speed.json", speed)
                manifest["reports"]["speed"] = "reports/speed.json"
        manifest["model"]["sha256"] = manifest["model"]["sha256"] or sha256_file(w.path(REFERENCE_PATH))
        if pruned is not None:
            manifest["pruning"] = {"ratios": dict(cfg.prune.ratios), "criterion": cfg.prune.criterion,
                                   "sparsity": cfg.prune.sparsity, "sparse_layers": pruned.sparse_layers,
                                   "reference": "the unpruned original model (reference/model.pt2)"}
            manifest["reports"]["pruning"] = "reports/pruning.json"
            manifest["parity_samples"]["pruned_reference_outputs"] = PARITY_REFERENCE_PRUNED
        result = None
        if cfg.run_verify:
            from .stages.verify import verify as run_verify

            # A provisional manifest, so that verify's timing workers can open the staged bundle; commit rewrites it.
            w.write_json(MANIFEST, {"format_version": FORMAT_VERSION, "edgemm_version": __version__, **manifest,
                                    "artifacts": [a.to_dict() for a in w.artifacts]})
            staged = Bundle.open(w.tmp, verify_hashes=False)
            result = run_verify(staged, samples=eval_samples, config=vcfg, reference_module=_module(resolved.model),
                                threads=cfg.threads, write=False)
            for key, data in result.reports().items():
                rel = f"reports/{key}.json"
                w.write_json(rel, data)
                manifest["reports"][key] = rel
            result.raise_on_breach()
        bundle = w.commit(manifest)
    logger.info("bundle written to %s", bundle.root)
    if int8_results:
        from .stages.quantize import slower_line

        for r in int8_results:
            line = slower_line(r, pruned=pruned is not None)
            if line:
                logger.warning("note: %s", line)
    bundle.last_verify = result  # type: ignore[attr-defined]
    if pruned is not None:
        from .stages.prune import check_budget

        check_budget(pruned.report, f"the bundle at {bundle.root}")
    _raise_budget(bundle, int8_results, cfg)
    return bundle


def _module(model):
    return model.module() if is_program(model) else model


def _reference_name() -> str:
    from .backends.registry import reference_backend

    return reference_backend().name


def _onnx_backend() -> str:
    """The backend that runs the fp32 ONNX interchange file on this CPU (ONNX Runtime): the first CPU backend,
    in the registry's order, whose artifact folder holds plain ONNX and that runs it."""
    from .backends.registry import all_backends

    for b in all_backends().values():
        if not b.reference and b.device == "cpu" and b.formats[:1] == ("onnx",):
            return b.name
    raise EdgemmError("no installed backend runs ONNX on this CPU; pip install onnxruntime")


def _manifest(resolved: ResolvedModel, cfg: PipelineConfig, calib_src, eval_samples, parity_kind: str, info: dict) -> dict:
    vcfg = cfg.verify
    mc = resolved.recipe.model
    return {
        "model": {"name": cfg.name, "source": resolved.source, "sha256": resolved.sha256 or "",
                  # how to rebuild the user's original nn.Module (the benchmark baseline), when it came from a factory
                  "factory": mc.factory,
                  "checkpoint": str(resolved.recipe.resolve(mc.checkpoint)) if mc.checkpoint else None},
        **resolved.spec.to_manifest(),
        "calibration": calib_src.manifest_entry(cfg.ptq.method) if calib_src is not None
        else {"source": None, "sha256": None, "samples": 0, "method": None},
        "evaluation": {
            "source": cfg.data.evaluation,
            "sha256": sha256_file(Path(cfg.data.evaluation)) if cfg.data.evaluation and Path(cfg.data.evaluation).is_file() else None,
            "samples": len(eval_samples) if eval_samples is not None else 0,
        },
        "parity_samples": {"path": PARITY_SAMPLES, "source": parity_kind, "reference_outputs": PARITY_REFERENCE},
        "export": info,
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
        f"(see reports/accuracy.json); raise --max-drop{'' if cfg.qat else ' or use --qat'}"
    )
