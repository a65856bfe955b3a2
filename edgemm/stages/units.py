"""The built-in stages, in pipeline order: each one adapts a stage module to the ``Stage`` contract.

    reference -> prune -> onnx -> compile -> [plugin stages] -> ptq -> qat -> pruning-report -> parity

Each unit reads the context (config, graph state), calls its stage module and leaves its results in
the context; ``wanted`` says when the config asks for it.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import layout
from ..backends.base import version_of
from ..errors import EdgemmError, setting
from ..log import logger, step
from ..modelfile import is_model_file
from .base import Stage, StageContext


def _reference_name() -> str:
    from ..backends.registry import reference_backend

    return reference_backend().name


def onnx_backend() -> str:
    """The backend that runs the fp32 ONNX interchange file on this CPU (ONNX Runtime): the first CPU backend,
    in the registry's order, whose artifact folder holds plain ONNX and that runs it."""
    from ..backends.registry import all_backends

    for b in all_backends().values():
        if not b.reference and b.device == "cpu" and b.formats[:1] == ("onnx",):
            return b.name
    raise EdgemmError("no installed backend runs ONNX on this CPU; pip install onnxruntime")


class ReferenceStage(Stage):
    """The user's original model saved as a torch.export program: the fp32 accuracy reference."""

    name = "reference"
    description = "save the user's model as the fp32 torch reference (torch.export .pt2)"

    def wanted(self, ctx: StageContext) -> bool:
        return not is_model_file(ctx.graph.model)  # a user's ONNX is its own reference (the fp32 ONNX artifact)

    def run(self, ctx: StageContext) -> None:
        from ..bundle import Artifact
        from .export import export_reference

        g = ctx.graph
        rel = layout.reference_path(g.name)
        with step(f"saving the fp32 torch reference (torch.export){_of(g.name)}"):
            g.program = export_reference(g.model, g.args, g.spec, ctx.path(rel))
        ctx.add_artifact(Artifact(rel, "torch-export", "fp32", _reference_name(), _reference_name(),
                                  toolchain={"torch": version_of("torch") or "?"}))


class PruneStage(Stage):
    """Structured pruning + distillation fine-tune: the graph's deployed model becomes a smaller copy."""

    name = "prune"
    description = "remove channels/heads for real, then fine-tune with distillation"

    def wanted(self, ctx: StageContext) -> bool:
        return ctx.config.prune is not None

    def run(self, ctx: StageContext) -> None:
        from ..torchutil import is_program
        from .prune import prune_model

        g, cfg = ctx.graph, ctx.config
        if is_model_file(g.model):
            raise EdgemmError(f"{g.model.name} is an ONNX file: {setting('prune')} removes channels in the PyTorch model and "
                              "exports it again; prune the torch model instead")
        if is_program(g.model):
            raise EdgemmError("a torch.export program (.pt2) cannot be pruned: its graph is frozen; pass the nn.Module instead "
                              "(a recipe [model] factory, or edgemm.export(module, ...) from Python)")
        train = g.training.read()
        if train is None and (cfg.prune.epochs or cfg.prune.finetune_minutes):
            raise EdgemmError(f"{setting('prune')} fine-tunes on training data: set [data] training (or calibration) in the recipe, "
                              f"or give {setting('calibration')}")
        with step(f"pruning ({', '.join(f'{k}={v}' for k, v in cfg.prune.ratios.items()) or cfg.prune.sparsity}; "
                  f"fine-tuning on {len(train) if train is not None else 'no'} samples)"):
            g.pruned = prune_model(g.model, g.spec, cfg.prune, train=train, evaluation=g.eval_samples,
                                   progress=lambda msg: logger.info("  %s", msg))
        g.deployed = g.pruned.module


class OnnxStage(Stage):
    """The deployed model (original or pruned) exported to the fp32 ONNX every target starts from."""

    name = "onnx"
    description = "export the fp32 ONNX interchange model"

    def wanted(self, ctx: StageContext) -> bool:
        return True

    def run(self, ctx: StageContext) -> None:
        from ..bundle import Artifact
        from .export import export_onnx

        g, cfg = ctx.graph, ctx.config
        rel = layout.onnx_path(g.name)
        if is_model_file(g.model):
            self.copy_user_onnx(ctx, rel)
            return
        with step(f"exporting ONNX{_of(g.name)} (opset {cfg.export.opset}, {cfg.export.exporter} exporter)"):
            info = export_onnx(g.deployed, g.args, g.spec, ctx.path(rel), cfg.export,
                               program=g.program if g.deployed is g.model else None)
        g.export_info = info
        logger.info("  %s: %d nodes (%d before onnxslim), exporter %s", rel, info["nodes"], info["nodes_before_slim"], info["exporter"])
        if info["rewritten_attention"]:
            logger.info("  attention exported batch-first with split heads: %s ([export] rewrite_attention = false keeps torch's graph)",
                        ", ".join(info["rewritten_attention"]))
        runner = onnx_backend()
        ctx.add_artifact(Artifact(rel, "onnx", "fp32", runner, runner,
                                  toolchain={"torch": version_of("torch") or "?", "onnx": version_of("onnx") or "?",
                                             "onnxruntime": version_of("onnxruntime") or "?", "onnxslim": version_of("onnxslim") or "?"},
                                  extra={"exporter": info["exporter"], "opset": info["opset"], "nodes": info["nodes"],
                                         **({"rewritten_attention": info["rewritten_attention"]} if info["rewritten_attention"] else {})}))


    @staticmethod
    def copy_user_onnx(ctx: StageContext, rel: str) -> None:
        """The user's fp32 ONNX, as given (one self-contained file), is the interchange file and the reference."""
        from ..bundle import Artifact
        from ..modelfile import copy_onnx

        g = ctx.graph
        with step(f"reading the fp32 ONNX {g.model.name}{_of(g.name)} (the reference: no torch model)"):
            info = copy_onnx(g.model, ctx.path(rel))
        g.export_info = info
        logger.info("  %s: %d nodes, opset %s, from %s", rel, info["nodes"], info["opset"], g.model.name)
        runner = onnx_backend()
        ctx.add_artifact(Artifact(rel, "onnx", "fp32", runner, runner,
                                  toolchain={"onnx": version_of("onnx") or "?", "onnxruntime": version_of("onnxruntime") or "?"},
                                  extra={"exporter": info["exporter"], "opset": info["opset"], "nodes": info["nodes"],
                                         "reference": True, "source_sha256": g.model.sha256}))


def onnx_outputs(ctx: StageContext, feeds: dict) -> dict:
    """The graph's fp32 ONNX run on ``feeds`` (ONNX Runtime): the reference outputs of a model given as ONNX."""
    from ..backends.base import RunnerOptions
    from ..backends.registry import get_backend
    from ..compare import run_batched
    from .verify import default_threads

    g = ctx.graph
    options = RunnerOptions(threads=ctx.config.threads or default_threads())
    with get_backend(onnx_backend()).create_runner(ctx.path(ctx.fp32_onnx().path), g.spec, options) as runner:
        return run_batched(runner, feeds, ctx.config.verify.batch)


def onnx_reference_metrics(ctx: StageContext) -> dict | None:
    """The task metric per labelled head of the fp32 ONNX on the evaluation split (a model given as ONNX)."""
    from ..compare import Comparator

    samples, spec = ctx.graph.eval_samples, ctx.graph.spec
    if samples is None or not samples.labels:
        return None
    comparator = Comparator(spec, samples.feeds, samples.labels)
    out = onnx_outputs(ctx, samples.feeds)
    return comparator.task_metrics(out, out)


class CompileStage(Stage):
    """Every target's fp32 (and fp16) artifacts from the fp32 ONNX."""

    name = "compile"
    description = "compile the fp32 ONNX for every target (OpenVINO IR fp32/fp16, ...)"

    def wanted(self, ctx: StageContext) -> bool:
        return True

    def run(self, ctx: StageContext) -> None:
        from .compile import compile_targets

        compile_targets(ctx, ctx.config.export.targets, ctx.config.export.fp16, onnx_backend())


def ptq_config(ctx: StageContext):
    """The PTQ config of this export with what verify and the [quantize] options add (parity floor, strictness,
    search cap, regression budget): PTQ and QAT quantize under the same rules."""
    from .options.quantize import QuantizeOptions

    cfg = ctx.config
    q = ctx.options("quantize", QuantizeOptions())
    return replace(cfg.ptq, parity_floor=cfg.verify.cosine_min_int8, strict=q.strict, search_minutes=q.search_minutes,
                   regression_budget=q.regression_budget, parity_samples=cfg.verify.parity_samples)


class PTQStage(Stage):
    """INT8 post-training quantization for every target, within the accuracy budget and the speed guard."""

    name = "ptq"
    description = "INT8 post-training quantization with calibration data (accuracy budget, speed guard)"

    def wanted(self, ctx: StageContext) -> bool:
        return bool(ctx.config.int8)

    def run(self, ctx: StageContext) -> None:
        from .quantize import add_int8_artifacts, reference_metrics

        g, cfg = ctx.graph, ctx.config
        ptq = ptq_config(ctx)
        onnx_only = is_model_file(g.model)  # the user's ONNX is the reference; no torch model to quantize or run
        g.reference_metrics = onnx_reference_metrics(ctx) if onnx_only else reference_metrics(g.deployed_module, g.spec, g.eval_samples)
        results = add_int8_artifacts(ctx, ctx.path(ctx.fp32_onnx().path), g.calibration, cfg.export.targets, ptq,
                                     model=None if onnx_only else g.deployed, reference=g.reference_metrics)
        # A target whose INT8 missed its parity floor is not in the bundle (add_int8_artifacts said so in one line);
        # the manifest records it, and nothing downstream (QAT, the pruning report, the speed report) counts it.
        left = [r for r in results if r.left_out]
        if left:
            ctx.manifest.setdefault("int8_left_out", []).extend(
                {"graph": g.name, "target": r.target, "reason": r.left_out, "cosine": r.candidate.cosine,
                 "parity_floor": ptq.parity_floor, "search": r.search} for r in left)
        g.int8_results = [r for r in results if not r.left_out]
        g.every_int8 = list(g.int8_results)


class QATStage(Stage):
    """Quantization-aware fine-tuning; with --qat its INT8 artifacts answer to the budget (PTQ's stay for comparison)."""

    name = "qat"
    description = "quantization-aware training, then Q/DQ export like PTQ"

    def wanted(self, ctx: StageContext) -> bool:
        return bool(ctx.config.qat)

    def run(self, ctx: StageContext) -> None:
        from .qat import add_qat_artifacts

        g = ctx.graph
        results = add_qat_artifacts(ctx, g.int8_results, ptq_config(ctx))
        g.int8_results = [r for r in results if not r.left_out]  # left out in one line by the quantizer, as PTQ's
        g.every_int8 += g.int8_results


class ThreadsStage(Stage):
    """Each CPU artifact timed at the export's threads against one thread; the faster count recorded."""

    name = "threads"
    description = "time each CPU artifact at 1 thread against --threads and record the faster count ([export] tune_threads)"

    def wanted(self, ctx: StageContext) -> bool:
        return bool(ctx.config.export.tune_threads)

    def run(self, ctx: StageContext) -> None:
        from .threads import tune_threads

        tune_threads(ctx)


class PruningReportStage(Stage):
    """reports/pruning.json: the pruning stage's report + size, latency per CPU target, accuracy after INT8."""

    name = "pruning-report"
    description = "time unpruned vs pruned and write reports/pruning.json"

    def wanted(self, ctx: StageContext) -> bool:
        return ctx.graph.pruned is not None

    def run(self, ctx: StageContext) -> None:
        g, cfg = ctx.graph, ctx.config
        ctx.reports["pruning"] = export_pruning_report(g.model, g.pruned, g.spec, g.args, ctx.path(ctx.fp32_onnx().path),
                                                 cfg.export, cfg.threads, g.every_int8)
        ctx.manifest["pruning"] = {"ratios": dict(cfg.prune.ratios), "criterion": cfg.prune.criterion,
                                   "sparsity": cfg.prune.sparsity, "sparse_layers": g.pruned.sparse_layers,
                                   "reference": f"the unpruned original model ({layout.reference_path(g.name)})"}
        for art in ctx.artifacts():
            if art.path != layout.reference_path(g.name):
                art.extra["pruned"] = True


class ParityStage(Stage):
    """The graph's held-out parity samples and the reference's outputs on them (verify compares without running
    the reference's code), and the graph's manifest entry."""

    name = "parity"
    description = "store parity samples and the reference outputs on them"

    def wanted(self, ctx: StageContext) -> bool:
        return True

    def run(self, ctx: StageContext) -> None:
        from ..torchutil import run_module

        g, vcfg = ctx.graph, ctx.config.verify
        n = vcfg.parity_samples
        g.spec = self.ship_assets(ctx)
        if g.eval_samples is not None:
            parity = g.eval_samples.take(slice(0, n)).feeds
            kind = f"first {min(n, len(g.eval_samples))} samples of {Path(str(ctx.config.data.evaluation)).name}"  # no host path
        elif g.calibration is not None and not g.calibration.synthetic:
            from .quantize import held_out

            _, held, kind = held_out(g.calibration, None)  # the samples INT8 was checked on, not calibrated on
            parity = {k: v[:n] for k, v in held.items()}
        else:
            parity, kind = self.valid_feeds(g, n, ctx.writer.tmp)
        samples_rel, ref_rel = layout.parity_samples_path(g.name), layout.parity_reference_path(g.name)
        np.savez_compressed(ctx.path(samples_rel), **parity)
        if is_model_file(g.model):
            outputs = onnx_outputs(ctx, parity)
            reference = {k: outputs[k] for k in g.spec.output_names}
        else:
            reference = dict(zip(g.spec.output_names, run_module(g.module, parity, g.spec.input_names)))
        np.savez_compressed(ctx.path(ref_rel), **reference)
        entry = {"path": samples_rel, "source": kind, "reference_outputs": ref_rel}
        if g.pruned is not None:  # pruned artifacts compute the pruned model: parity against it, accuracy against the original
            pruned_rel = layout.parity_reference_path(g.name, pruned=True)
            np.savez_compressed(ctx.path(pruned_rel),
                                **dict(zip(g.spec.output_names, run_module(g.pruned.module, parity, g.spec.input_names))))
            entry["pruned_reference_outputs"] = pruned_rel
        g.entry = {**g.spec.to_manifest(), "parity": entry}
        family = getattr(g.module, "edgemm_family", None)  # a family model (edgemm.families): what it records
        if isinstance(family, dict):
            g.entry["family"] = family

    @staticmethod
    def ship_assets(ctx: StageContext):
        """Copy the files the graph's pre-processing reads (a tokenizer.json) into the bundle; the spec naming the
        copies, so that ``rt.preprocess`` needs the bundle alone. Paths are relative to the recipe's folder (a model
        folder for a family model; the working directory for a model from Python)."""
        from ..modalities.assets import ship_assets

        base = getattr(ctx.recipe, "base_dir", None) or Path(".")
        return ship_assets(ctx.graph.spec, base, ctx.writer.tmp, ctx.graph.name)

    @staticmethod
    def valid_feeds(g, n: int, bundle_root=None) -> tuple[dict, str]:
        """Parity samples without evaluation or calibration data: a family's valid feeds (token ids inside the
        vocabulary, prefix masks, waveforms, images), else the user's example inputs where random feeds are no
        valid input (integer inputs: random ids are 0 or 1) or where they are as many, else the feeds the inputs'
        modalities make (sentences of the input's own tokenizer, read from ``bundle_root``), else random feeds."""
        make = getattr(g.module, "edgemm_valid_feeds", None)
        if callable(make):
            family = (getattr(g.module, "edgemm_family", None) or {}).get("name", "the model's")
            return g.spec.check_feeds(make(n, 1), "parity feeds: "), f"{n} valid feeds made by the {family} family (no evaluation data given)"
        if g.valid_examples:  # the user's example inputs (the pipeline's own stand-ins are random feeds)
            rows = len(next(iter(g.examples.values())))
            integer = any(np.issubdtype(np.dtype(t.dtype), np.integer) for t in g.spec.inputs)
            if integer or rows >= n:
                return ({k: np.asarray(v)[:n] for k, v in g.examples.items()},
                        f"the {min(rows, n)} example inputs given to export (no evaluation data given)")
        if any(t.preprocessing is not None for t in g.spec.inputs):
            feeds = g.spec.valid_feeds(n, 1, base_dir=bundle_root)
            return g.spec.check_feeds(feeds, "parity feeds: "), f"{n} valid feeds made by the inputs' modalities (no evaluation data given)"
        return g.spec.example_feeds(batch=n, seed=1), "random feeds (no evaluation data given)"


def export_pruning_report(original, pruned, spec, args, pruned_onnx, export_cfg, threads, int8_results) -> dict:
    """reports/pruning.json of an export: the pruning stage's report + file size and fp32 latency per CPU target
    (the unpruned model exported beside the pruned one, timed interleaved) + accuracy after INT8 (worst target)."""
    import tempfile
    from pathlib import Path

    from ..backends.registry import get_backend
    from .export import export_onnx
    from .prune import pruning_report
    from .quantize.ptq import compare_latency

    report = dict(pruned.report)
    with tempfile.TemporaryDirectory(prefix="edgemm-prune-") as tmp:
        unpruned = Path(tmp) / "original.onnx"
        with step("exporting the unpruned model to ONNX for the pruning report"):
            export_onnx(original, args, spec, unpruned, export_cfg)
        latency = {}
        one = {k: v[:1].numpy() for k, v in zip(spec.input_names, args)}
        threads = threads or 2
        for target in export_cfg.targets:
            backend = get_backend(target)
            if backend.device != "cpu" or not backend.runs("onnx") or not backend.availability().available:
                continue
            with step(f"timing unpruned vs pruned fp32 on {target} (batch 1, {threads} threads, interleaved)"):
                before, after = compare_latency(target, spec, unpruned, "fp32", Path(pruned_onnx), "fp32", one, threads)
            latency[target] = {"before": before, "after": after, "batch": 1, "threads": threads}
        size = (unpruned.stat().st_size, Path(pruned_onnx).stat().st_size)
    accuracy = dict(report.get("accuracy", {}))
    int8: dict = {}
    for r in int8_results:
        for head, v in (r.candidate.metrics or {}).items():
            int8[head] = min(v, int8.get(head, 1.0))  # the worst target
    if int8:
        accuracy["after_int8"] = int8
    keep = {k: report[k] for k in ("request", "branches", "groups", "finetune", "sparsity") if k in report}
    params, flops = report.get("params") or {}, report.get("flops") or {}
    return pruning_report(**keep, params=(params.get("before"), params.get("after")), flops=(flops.get("before"), flops.get("after")),
                          size_bytes=size, latency_ms=latency, accuracy=accuracy, max_drop=(report.get("budget") or {}).get("max_drop"))


def _of(graph: str) -> str:
    return "" if graph == layout.MAIN else f" of graph {graph!r}"


BUILTIN: tuple[Stage, ...] = (ReferenceStage(), PruneStage(), OnnxStage(), CompileStage(), PTQStage(), QATStage(),
                              ThreadsStage(), PruningReportStage(), ParityStage())
