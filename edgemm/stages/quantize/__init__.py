"""INT8 quantization stage: calibration + per-target Q/DQ (or NNCF IR) with speed and accuracy guards.

Takes the fp32 ONNX artifact (and the torch model it came from), returns INT8 artifacts added to the
bundle being written: one per target, in the target backend's folder, quantized with the quantizer
the target declares (or the one the user chose), measured on the backend that checks it here.
A target whose INT8 cannot reach its parity floor (no labels) is left out of the bundle with one
warning line; with ``strict`` the export fails instead (``Int8FloorNotMet``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from ...backends.base import version_of
from ...bench.stats import fmt_ms
from ...backends.registry import get_backend
from ... import layout
from ...bundle import Artifact
from ...compare import Comparator
from ...cpu import cpu_int8
from ...data.calibration import CalibrationSource
from ...data.datasets import Samples
from ...iospec import IOSpec
from ...log import logger, step
from ...metrics import PRIMARY
from .ptq import BudgetNotMet, Int8FloorNotMet, PrecisionPolicy, PTQConfig, TargetResult, install, quantize_target
from .registry import quantizer_for

__all__ = ["PTQConfig", "PrecisionPolicy", "BudgetNotMet", "Int8FloorNotMet", "add_int8_artifacts", "reference_metrics",
           "check_quantizers", "slower_line", "speed_report", "held_out", "left_out_line"]


def reference_metrics(model, spec: IOSpec, samples: Samples | None) -> dict[str, float] | None:
    """The task metric per labelled head of the fp32 torch model on the evaluation split (top-1, or MAE for a
    regression head): the accuracy reference of the INT8 budget. Embedding heads score 1.0 recall@1 against
    themselves; the PTQ search measures them against the fp32 ONNX's embeddings."""
    if samples is None or not samples.labels:
        return None
    comparator = Comparator(spec, samples.feeds, samples.labels)
    out = comparator.run_module(model)
    return comparator.task_metrics(out, out)


def check_quantizers(targets, cfg: PTQConfig) -> None:
    """Refuse a quantizer a target cannot take before any work is done (one line each)."""
    for target in targets:
        quantizer_for(get_backend(target), cfg.quantizers.get(target))


def _toolchain(res: TargetResult) -> dict[str, str]:
    toolchain = {"onnxruntime": version_of("onnxruntime") or "?", "onnx": version_of("onnx") or "?"}
    if res.quantizer == "inc":
        toolchain.update({"neural-compressor": version_of("neural-compressor") or "?", "torch": version_of("torch") or "?"})
    if res.format == "tflite":  # converted from the torch model by litert-torch, run by the LiteRT interpreter
        return {"litert-torch": version_of("litert-torch") or "?", "ai-edge-litert": version_of("ai-edge-litert") or "?",
                "torch": version_of("torch") or "?"}
    if res.format == "openvino-ir":
        toolchain.update(nncf=version_of("nncf") or "?", openvino=version_of("openvino") or "?")
    return toolchain


HELD_OUT_MAX = 64


def held_out(calib: CalibrationSource, samples: Samples | None):
    """Without evaluation data, the last fifth of the calibration samples (8..64) is held out: every INT8 candidate
    is compared with the fp32 model on them, and ranges come from the rest. -> (calibration, check feeds, source)."""
    if samples is not None:
        return calib, None, f"evaluation data ({samples.source})" if getattr(samples, "source", None) else "evaluation data"
    n = len(calib)
    h = max(8, min(HELD_OUT_MAX, n // 5)) if n >= 40 else 0
    if h == 0:  # too few to hold any out: the calibration samples themselves (not held out; the report says so)
        return calib, dict(calib.feeds), "the calibration samples (too few to hold out)"
    head = CalibrationSource({k: v[: n - h] for k, v in calib.feeds.items()}, calib.source, calib.sha256, calib.synthetic)
    return head, {k: v[n - h:] for k, v in calib.feeds.items()}, f"last {h} calibration samples, held out of calibration"


def speed_entry(res: TargetResult, cfg: PTQConfig) -> dict:
    """The manifest's ``speed``: {vs_fp32, batch, slower} (DESIGN.md's contract) + the measurement behind it.

    ``slower`` means measured slower than fp32 *with confidence*: the whole 95 % interval of int8 / fp32 (paired
    bootstrap over interleaved rounds, edgemm.bench.stats) lies above 1 + the tolerance. Inside the noise the
    verdict is "same" and ``slower`` is False: the int8 the user asked for is kept and ``edgemm.load`` may pick it."""
    c = res.candidate
    pair = c.speed
    measured = pair is not None and c.latency_ms is not None and bool(res.fp32_latency_ms)
    out = {"vs_fp32": round(c.latency_ms / res.fp32_latency_ms, 4) if measured else None, "batch": cfg.batch,
           "slower": (pair.verdict == "slower") if measured else None, "guard": res.speed_met is not None,
           "met": res.speed_met, "int8_ms": c.latency_ms, "fp32_ms": res.fp32_latency_ms, "threads": cfg.threads}
    if measured:
        r = pair.ratio
        out.update({"verdict": pair.verdict, "interval": [round(r.low, 4), round(r.high, 4)], "confidence": r.confidence,
                    "tolerance": cfg.speed_tolerance, "rounds": r.rounds, "stable": pair.stable, "text": pair.verdict_text(),
                    "int8_p90_ms": r.b.p90_ms, "fp32_p90_ms": r.a.p90_ms, "int8_p99_ms": r.b.p99_ms,
                    "fp32_p99_ms": r.a.p99_ms, "backend": res.backend, "measured_by": "export",
                    "machine": pair.state.get("after")})
    return out


def left_out_line(res: TargetResult, cfg: PTQConfig, graph: str | None = None, strict: bool = False) -> str:
    """One line: a target's INT8 misses its parity floor, what happens (left out, or the export fails with strict),
    and what to do."""
    tried = len((res.speed_report or {}).get("candidates", []))
    capped = res.search.get("capped")
    of = f" (graph {graph!r})" if graph else ""
    why = (f"held-out cosine {res.candidate.cosine:.4f} vs fp32 is below the parity floor {cfg.parity_floor}"
           + (f" after {tried} candidate(s)" if tried > 1 else "")
           + (f", the search stopped at its {cfg.search_minutes:g} min cap" if capped else ""))
    fix = ("give labelled evaluation data (--eval), lower [verify] cosine_min_int8"
           + (", raise --int8-search-minutes" if capped else ""))
    if strict:
        return (f"{res.target}{of}: INT8 cannot reach its parity floor ({why}) and --int8-strict asks for it; {fix}, "
                "or drop --int8-strict to leave this INT8 out and keep every other artifact")
    return (f"{res.target}{of}: INT8 left out of the bundle ({why}); every other artifact is kept; to keep it: {fix}, "
            "or pass --int8-strict to fail instead")


def slower_line(res: TargetResult, cpu=None, pruned: bool = False) -> str | None:
    """The closing note of an export about INT8 speed, from the one measurement the manifest records (None when
    int8 was faster with confidence, or not measured): slower with confidence -> fp32 is what ``edgemm.load``
    picks here, and what could help; inside the noise -> int8 is kept as asked."""
    if res.left_out or res.speed_met is None or res.candidate.speed is None or res.candidate.latency_ms is None:
        return None
    pair = res.candidate.speed
    if pair.verdict == "faster":
        return None
    c, f = res.candidate.latency_ms, res.fp32_latency_ms
    batch = (res.speed_report or {}).get("batch", 1)
    measured = f"int8 {fmt_ms(c)} ms vs fp32 {fmt_ms(f)} ms at batch {batch}, {pair.ratio.rounds} interleaved rounds"
    if pair.verdict != "slower":
        return f"{res.target}: {pair.verdict_text()} ({measured})"
    cpu = cpu or cpu_int8()
    why = f"{cpu.isa}, no VNNI" if not cpu.vnni else cpu.isa
    ideas = ["use the fp32 artifact"] + ([] if pruned else ["try --prune"]) + ["a larger batch"] \
        + ([] if cpu.vnni else ["a CPU with VNNI"])
    return (f"{res.target}: {pair.verdict_text()} ({measured}, this CPU: {why}); the int8 artifact is kept (marked "
            f"speed.slower) and `edgemm.load` picks fp32 here; {', '.join(ideas[:-1])} or {ideas[-1]}; "
            "`edgemm bench --decide` re-measures on the deployment machine")


def speed_report(results: list[TargetResult]) -> dict | None:
    """reports/speed.json: per target, the profiled per-node decisions and every candidate the guard tried."""
    targets = {r.target: r.speed_report for r in results if r.speed_report and not r.left_out}
    if not targets:
        return None
    return {"cpu": cpu_int8().to_dict(), "targets": targets}


def add_int8_artifacts(ctx, fp32: Path, calib: CalibrationSource, targets, cfg: PTQConfig, *, model,
                       reference: dict[str, float] | None = None, method_name: str = "ptq",
                       extra_info: dict | None = None) -> list[TargetResult]:
    """Quantize ``fp32`` (an ONNX file exported from ``model``) for every target; add the INT8 artifacts to the
    context's graph (``ctx``: edgemm.stages.base.StageContext; its graph's spec and evaluation samples).

    ``reference``: the task metric per head the budget is measured against (default: ``model``'s own on the samples).
    Returns every target's result; a target left out of the bundle (its INT8 misses the parity floor) has
    ``left_out`` set and no artifact. With ``cfg.strict`` that raises ``Int8FloorNotMet`` instead.
    """
    spec, samples = ctx.graph.spec, ctx.graph.eval_samples
    stem = layout.stem("int8", method_name)
    check_quantizers(targets, cfg)
    if reference is None:
        reference = reference_metrics(model, spec, samples)
    results = []
    calib, checks, checks_from = held_out(calib, samples)
    graph = None if ctx.graph.name == layout.MAIN else ctx.graph.name
    with tempfile.TemporaryDirectory(prefix="edgemm-quant-") as tmp:
        for target in targets:
            backend = get_backend(target)
            with step(f"INT8 for {target}"):
                res = quantize_target(target, fp32, spec, calib, samples, reference, cfg, Path(tmp) / target, model=model,
                                      checks=checks)
            if res.floor_met is False:
                if cfg.strict:
                    raise Int8FloorNotMet(left_out_line(res, cfg, graph, strict=True))
                res.left_out = left_out_line(res, cfg, graph)
                logger.warning("warning: %s", res.left_out)
                results.append(res)
                continue
            rel_dir = ctx.folder(backend.folder)
            files = install(res, ctx.path(rel_dir + "/x").parent, stem)
            rels = [f"{rel_dir}/{f.name}" for f in files]
            c = res.candidate
            heads = {h: {"task": res.tasks.get(h), "metric": PRIMARY.get(res.tasks.get(h, ""), None),
                         "reference": res.reference.get(h), "value": v, "drop": c.drops.get(h)} for h, v in c.metrics.items()}
            extra = {
                "quantizer": res.quantizer, "calibration_method": cfg.method, "kept_float": res.kept_float,
                "sensitivity": res.sensitivity, "budget": {"max_drop": cfg.max_drop, "relative": cfg.relative,
                                                           "met": res.budget_met, "drop_on_target": c.drop, "heads": heads,
                                                           **({"regression": {"max_mae_increase": cfg.regression_budget[0],
                                                                              "relative": cfg.regression_budget[1]}}
                                                              if cfg.regression_budget else {})},
                "speed": speed_entry(res, cfg),
                "checked_on": res.backend,
                "checks": {"samples": len(next(iter((samples.feeds if samples is not None else checks).values())))
                           if (samples is not None or checks is not None) else 0, "source": checks_from,
                           "parity_floor": None if samples is not None and samples.labels else cfg.parity_floor,
                           "floor_met": res.floor_met, "cosine": c.cosine, "agreement": c.agreement,
                           "task": dict(res.tasks), "scores": c.scores, "qdq_pairs_dropped": c.qdq_removed},
                "cpu": {**cpu_int8().to_dict(), "reduce_range": res.reduce_range},
            }
            if res.search:
                extra["search"] = res.search
            runner = c.runner if c.runner is not None else backend.probe_runner(files[0], spec, "int8")
            if runner:  # how this backend may run it (RunnerOptions.for_artifact reads it back)
                extra["runner"] = runner
            if res.quantizer == "inc":  # measured and reported; INC keeps ops float for accuracy only
                extra["speed"].update(guard=False, note="inc: latency measured, no speed fallback")
            extra.update(extra_info or {})
            if res.validity is not None:
                extra["tensorrt_qdq_check"] = {"valid": not res.validity, "problems": res.validity}
            # The target's artifact; where another backend checks it here (TensorRT's Q/DQ in ONNX Runtime), that one too.
            for name in dict.fromkeys([target] + ([backend.checked_by] if backend.checked_by else [])):
                ctx.add_artifact(Artifact(rels[0], res.format, "int8", name, target, method=method_name, toolchain=_toolchain(res),
                                        extra=extra), files=rels)
            results.append(res)
    return results
