"""INT8 post-training quantization for every target, guarded by speed and an accuracy budget.

One algorithm, per-target adapters (the NNCF shape): for each target we build a candidate with
the target's quantizer, measure it on the target's own backend (accuracy on the evaluation
split; batch-1 latency against the fp32 model for CPU targets) and, when it breaks a guard, keep
parts in float:
- speed (CPU targets): an INT8 model must not be slower than fp32 at batch 1 (tolerance 5 %);
  op groups that run slower quantized on this CPU are kept float, one group at a time;
- accuracy (``max_drop``, per head by its task: top-1, MAE, recall@1; ``edgemm.metrics``): parts (whole
  modality branches and single layers) are ranked by the drop they cause when quantized alone; the
  fewest of them are kept float until the budget holds. If it cannot hold, the best model found is
  kept and ``BudgetNotMet`` says so;
- parity (no labels): every candidate is judged by its held-out cosine vs fp32 against the parity
  floor, with the same search ranked by cosine drop; a target whose INT8 cannot reach the floor is
  left out of the bundle (``floor_met`` False), or fails the export with ``--int8-strict``.
Mask-like tensors (attention masks: built from constants <= -1e4, of magnitude >= 1e30 or infinite, or
measured beyond -1e9) are never quantized, by any scheme. The searches stop at ``search_minutes`` and report what they skipped.
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ...lazy import lazy_import
from ...backends.base import Backend, RunnerOptions
from ...backends.registry import get_backend
from ...compare import Comparator
from ...cpu import cpu_int8
from ...data.calibration import CalibrationSource
from ...data.datasets import Samples
from ...errors import BackendUnavailable, EdgemmError
from ...iospec import IOSpec
from ...log import logger
from ...metrics import BUDGET_TOLERANCE, PRIMARY, Budget, below, within_budget
from . import graph as G
from .qdq import calibrate, check_trt_qdq, preprocess_for_quantization, quantize_qdq
from .registry import Quantizer, quantizer_for

# Op groups tried, in order, when an INT8 model is slower than fp32 on a CPU backend.
SPEED_GROUPS = (("MatMul",), ("Gemm",), ("Add", "Mul"), ("Conv",))


class BudgetNotMet(EdgemmError):
    """The accuracy budget could not be met; the best model found was kept."""


class Int8FloorNotMet(EdgemmError):
    """``--int8-strict``: a target's INT8 could not reach its parity floor (without strict it is left out)."""


@dataclass(frozen=True)
class PrecisionPolicy:
    """Parts pinned in float: branches (input names or "fusion"), op types, node names."""

    float_parts: tuple[str, ...] = ()
    exclude_ops: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()

    def nodes(self, model) -> set[str]:
        branches = G.node_branches(model)
        unknown = [p for p in self.float_parts if p not in set(branches.values()) | {G.FUSION}]
        if unknown:
            have = sorted(set(branches.values()))
            raise EdgemmError(f"[precision] names unknown part(s) {unknown}; parts of this model: {', '.join(have)}")
        return ({n for n, b in branches.items() if b in self.float_parts}
                | {n.name for n in model.graph.node if n.op_type in self.exclude_ops}
                | set(self.exclude_nodes))


@dataclass(frozen=True)
class PTQConfig:
    method: str = "minmax"  # calibration: minmax | percentile | entropy
    quantizers: dict = field(default_factory=dict)  # target -> quantizer name (default: the backend's own)
    max_drop: float | None = 0.01  # absolute top-1 drop per head on the evaluation split
    relative: bool = False  # max_drop is a fraction of the reference top-1
    speed_guard: bool = True
    speed_tolerance: float = 0.05
    policy: PrecisionPolicy = PrecisionPolicy()
    threads: int = 2
    max_search_steps: int = 12
    parity_floor: float = 0.95  # without labels: min cosine vs fp32 on held-out samples every candidate must reach
    batch: int = 1  # the batch the user deploys: the speed guard's end-to-end confirmation runs at it
    regression_budget: tuple | None = None  # (max MAE increase, relative) of regression heads; None: max_drop's
    strict: bool = False  # a target whose INT8 misses its parity floor fails the export instead of being left out
    search_minutes: float = 5.0  # time cap per target of the speed-guard and accuracy searches
    parity_samples: int = 32  # verify's parity check runs on the first this many check samples: the floor holds there too

    @property
    def budget(self) -> Budget:
        return Budget(self.max_drop, self.relative, self.regression_budget)


@dataclass
class Candidate:
    path: Path
    files: list[Path]
    excluded: dict[str, str]  # node -> reason kept float
    metrics: dict[str, float] = field(default_factory=dict)
    drop: float | None = None
    latency_ms: float | None = None
    fp32_ms: float | None = None  # fp32 latency measured in the same interleaved run
    speed: object = None  # that run (edgemm.bench.paired.PairResult): the ratio's interval and the verdict
    cosine: float | None = None  # min cosine vs the fp32 model over outputs, on the check samples
    agreement: float | None = None  # min top-1 agreement with the fp32 model over classification heads
    qdq_removed: int = 0  # Q/DQ pairs dropped because no int8 kernel consumed them
    scores: dict = field(default_factory=dict)  # head -> every task metric (top1 | mae, rmse | cosine, recall@k)
    drops: dict = field(default_factory=dict)  # head -> its drop in its budget's unit
    runner: dict | None = None  # RunnerOptions fields its backend probed for it (Backend.probe_runner); None: not yet


@dataclass
class TargetResult:
    target: str
    backend: str
    quantizer: str
    candidate: Candidate
    fp32_latency_ms: float | None
    kept_float: list[dict]
    sensitivity: list[dict]
    budget_met: bool | None
    speed_met: bool | None
    validity: list[str] | None = None  # TensorRT Q/DQ check problems (None: not checked)
    reduce_range: bool | None = None  # 7-bit weights (U8S8 on x86 without VNNI); None: not a Q/DQ scheme of ours
    format: str = "onnx"  # what the quantizer produced
    speed_report: dict | None = None  # reports/speed.json entry: profile, per-node decisions, candidates tried
    floor_met: bool | None = None  # without labels: whether the held-out cosine reaches the parity floor
    search: dict = field(default_factory=dict)  # the time cap: {minutes, seconds, capped, skipped}
    tasks: dict = field(default_factory=dict)  # head -> task
    reference: dict = field(default_factory=dict)  # head -> the reference value of its task metric
    left_out: str | None = None  # why this target's INT8 is not in the bundle (None: it is)


class SearchClock:
    """The time cap of one target's searches: steps asked for after ``minutes`` are skipped and named."""

    def __init__(self, minutes: float):
        self.minutes = minutes
        self.start = time.perf_counter()
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.minutes * 60.0 - (time.perf_counter() - self.start)

    def skip(self, step: str) -> bool:
        """True (and ``step`` recorded as skipped) once the cap has passed."""
        if self.left() > 0:
            return False
        self.skipped.append(step)
        return True

    def report(self) -> dict:
        return {"minutes": self.minutes, "seconds": round(time.perf_counter() - self.start, 2),
                "capped": bool(self.skipped), "skipped": list(self.skipped)}


def compare_latency(backend: str, spec: IOSpec, a: Path, a_precision: str, b: Path, b_precision: str,
                    feeds, threads: int, rounds: int | None = None, iters: int | None = None,
                    seconds: float | None = None) -> tuple[float, float]:
    """Batch-1 medians (ms) of two artifacts on one backend, timed side by side in interleaved rounds
    (``edgemm.bench.paired``). ``rounds``: the most rounds; ``seconds``: the time cap. ``iters`` is accepted for old
    callers; blocks are sized from the model's own call time."""
    res = measure_speed(backend, spec, a, a_precision, b, b_precision, feeds, threads, seconds=seconds,
                        max_rounds=rounds)
    return res.a_ms, res.b_ms


SPEED_CHECK_S = 15.0  # time cap of one int8-vs-fp32 measurement (it stops earlier once the verdict is clear)


def measure_speed(backend: str, spec: IOSpec, a: Path, a_precision: str, b: Path, b_precision: str, feeds, threads: int,
                  *, seconds: float | None = None, tolerance: float = 0.05, max_rounds: int | None = None,
                  b_options: dict | None = None):
    """``b`` against ``a`` in interleaved rounds with a 95 % interval on median(b) / median(a) (a PairResult)."""
    from ...bench.paired import MAX_ROUNDS, MIN_ROUNDS, measure_pair

    cap = SPEED_CHECK_S if seconds is None else max(0.0, min(seconds, SPEED_CHECK_S))
    top = MAX_ROUNDS if max_rounds is None else max(2, max_rounds)
    return measure_pair(backend, spec, a, a_precision, b, b_precision, feeds, threads, seconds=cap, tolerance=tolerance,
                        min_rounds=min(MIN_ROUNDS, top), max_rounds=top, b_options=b_options)


def check_backend(target: Backend, quantizer: Quantizer) -> str:
    """The backend that measures ``target``'s INT8 candidates here: the target itself when it runs them on this
    machine, else the backend it declares as its checker (TensorRT's Q/DQ model in ONNX Runtime)."""
    if target.runs(quantizer.produces) and target.availability().available:
        return target.name
    if target.checked_by is not None:
        get_backend(target.checked_by).require()
        return target.checked_by
    why = target.availability().reason or f"it does not run {quantizer.produces} files"
    raise BackendUnavailable(f"backend {target.name!r} cannot check its INT8 model on this machine ({why}) and declares no "
                             "backend that can; install it or drop it from --target")


class _CandidateBuilder:
    """Builds one candidate file for a target from a set of float-kept nodes, with the registry's quantizer."""

    def __init__(self, quantizer: Quantizer, pre: Path, model, calib: CalibrationSource, method: str, workdir: Path,
                 transformer: bool, cpu_target: bool = True, uncalibrated: set[str] = frozenset()):
        self.quantizer, self.pre, self.model, self.calib, self.workdir = quantizer, pre, model, calib, workdir
        self.transformer = transformer
        self.count = 0
        self.last_removed = 0
        self._ranges = None
        scheme = quantizer.scheme
        # x86 int8 kernels without VNNI saturate their 16-bit sums: 7-bit weights there (edgemm.cpu). Measured on AVX2
        # (benchmarks/results/int8-saturation-*): ORT's uint8 scheme and the symmetric int8 one, in ONNX Runtime and
        # in OpenVINO reading the same Q/DQ file, all lose points with 8-bit weights that the float emulation does not.
        # A GPU target (TensorRT) runs elsewhere and keeps 8-bit weights.
        self.reduce_range = scheme is not None and cpu_target and cpu_int8().u8s8_saturates
        if quantizer.works_on == "onnx-qdq":
            self._ranges = calibrate(pre, calib, method, symmetric=scheme.symmetric_activations, skip=uncalibrated)

    def build(self, excluded: set[str], only: set[str] | None = None) -> tuple[Path, list[Path]]:
        self.count += 1
        if self.quantizer.works_on == "openvino":
            from ...backends.openvino.quant import nncf_quantize

            xml = self.workdir / f"cand{self.count}.xml"
            skip = set(excluded) | ({n.name for n in self.model.graph.node} - only if only is not None else set())
            outputs = sorted({o for n in self.model.graph.node if n.name in skip for o in n.output if o})
            nncf_quantize(self.pre, xml, self.calib, sorted(skip), [], self.transformer, exclude_outputs=outputs)
            return xml, [xml, xml.with_suffix(".bin")]
        out = self.workdir / f"cand{self.count}.onnx"
        quantize_qdq(self.pre, out, self.calib, self.quantizer.scheme, self._ranges, nodes_to_exclude=sorted(excluded),
                     nodes_to_quantize=sorted(only) if only is not None else None, reduce_range=self.reduce_range)
        # Q/DQ only where an int8 kernel consumes it: a pair left on one input of a float op is error and time.
        onnx = lazy_import("onnx")
        m, self.last_removed = G.drop_unconsumed_qdq(onnx.load(str(out)))
        if self.last_removed:
            onnx.save(m, str(out))
        return out, [out]


def quantize_target(
    target: str, fp32_onnx: Path, spec: IOSpec, calib: CalibrationSource, samples: Samples | None,
    reference: dict[str, float] | None, cfg: PTQConfig, workdir: Path, progress: Callable[[str], None] = logger.info,
    model=None, checks: dict | None = None,
) -> TargetResult:
    """``model``: the user's torch model (a ``torch`` quantizer such as inc works on it; the others on ``fp32_onnx``).
    ``checks``: held-out feeds every candidate is compared with the fp32 model on (default: ``samples``' feeds).
    ``reference``: the task metric per labelled head of the fp32 model on ``samples`` (embedding heads are measured
    against the fp32 ONNX's own embeddings of the check feeds)."""
    onnx = lazy_import("onnx")
    target_backend = get_backend(target)
    qz = quantizer_for(target_backend, cfg.quantizers.get(target))
    quantizer = qz.name
    backend = check_backend(target_backend, qz)
    if qz.works_on == "torch":
        return _quantize_inc(target, backend, fp32_onnx, spec, calib, samples, reference, cfg, workdir, progress, model)
    if qz.works_on == "module":
        return _quantize_module(target, qz.name, fp32_onnx, spec, calib, samples, reference, cfg, workdir, progress, model, checks)
    clock = SearchClock(cfg.search_minutes)
    workdir.mkdir(parents=True, exist_ok=True)
    pre = preprocess_for_quantization(fp32_onnx, workdir / "pre.onnx")
    model = G.name_nodes(onnx.load(str(pre)))
    onnx.save(model, str(pre))
    transformer = any(n.op_type in ("Softmax",) for n in model.graph.node)
    masks, mask_tensors = G.mask_like(model, _scan_ranges(pre, calib))
    q = _CandidateBuilder(qz, pre, model, calib, cfg.method, workdir, transformer, cpu_target=target_backend.device == "cpu",
                          uncalibrated=mask_tensors)
    opts = RunnerOptions(threads=cfg.threads, precision="int8")
    labelled = samples is not None and bool(samples.labels)
    check_feeds = samples.feeds if samples is not None else checks
    # One comparator for every candidate: the task metric per head (the budget) and parity vs the fp32 model, one run each.
    comparator = Comparator(spec, check_feeds, samples.labels if labelled else None) if check_feeds is not None else None
    fp32_out = comparator.run_artifact(backend, fp32_onnx, RunnerOptions(threads=cfg.threads, precision="fp32")) \
        if comparator is not None else None
    tasks = comparator.tasks if comparator is not None else {}
    ref = dict(reference or {})
    if comparator is not None:  # embeddings: the fp32 model's own are the reference (recall@1 of itself: 1.0)
        ref.update({h: v for h, v in comparator.task_metrics(fp32_out, fp32_out).items() if tasks.get(h) == "embedding"})
    budget = cfg.budget
    speed_guarded = cfg.speed_guard and backend == target and target_backend.device == "cpu"
    has_budget = comparator is not None and bool(ref) and cfg.max_drop is not None
    floored = comparator is not None and not labelled  # without labels the parity floor judges every candidate
    excluded: dict[str, str] = {n: "policy" for n in cfg.policy.nodes(model)}
    excluded.update({n: why for n, why in masks.items() if n not in excluded})

    def make(excl: dict[str, str], only: set[str] | None = None) -> Candidate:
        path, files = q.build(set(excl), only=only)
        c = Candidate(path, files, dict(excl), qdq_removed=q.last_removed)
        if comparator is not None:
            out = comparator.run_artifact(backend, path, opts)
            c.cosine = min(v["cosine"] for v in comparator.parity(fp32_out, out).values())
            if floored and len(comparator) > cfg.parity_samples:  # verify's final check sees only the first ones
                head = {k: v[:cfg.parity_samples] for k, v in out.items()}
                ref_head = {k: v[:cfg.parity_samples] for k, v in fp32_out.items()}
                c.cosine = min([c.cosine] + [v["cosine"] for v in comparator.parity(ref_head, head).values()])
            c.agreement = min(comparator.agreement(fp32_out, out, classification_only=True).values(), default=None)
            c.scores = comparator.scores(out, fp32_out)
            c.metrics = {h: sc[PRIMARY[tasks[h]]] for h, sc in c.scores.items()}
            if ref:
                c.drops = budget.drops(ref, c.metrics, tasks)
                c.drop = budget.drop(ref, c.metrics, tasks)
        return c

    def shortfall(c: Candidate) -> float:
        """How far ``c`` is from passing the check the final artifact must pass (<= 0: it passes)."""
        parts = []
        if has_budget:
            parts.append(math.inf if c.drop is None else c.drop - cfg.max_drop)
        if floored and c.cosine is not None:
            parts.append(math.inf if math.isnan(c.cosine) else cfg.parity_floor - c.cosine)
        return max(parts) if parts else -math.inf

    def valid(c: Candidate) -> bool:
        return shortfall(c) <= BUDGET_TOLERANCE

    def check_line(c: Candidate) -> str:
        if comparator is None:
            return "not checked (no samples)"
        heads = ", ".join(f"{h} {PRIMARY[tasks[h]]} {v:.4f}" + (f" ({c.drops[h]:+.4f})" if h in c.drops else "")
                          for h, v in c.metrics.items())
        if has_budget:
            drop = "not measured" if c.drop is None else f"{c.drop:+.4f}"
            own = f", regression {cfg.regression_budget[0]:g}{' relative' if cfg.regression_budget[1] else ''}" \
                if cfg.regression_budget else ""
            return f"{heads}: worst drop {drop} (budget {cfg.max_drop}{' relative' if cfg.relative else ''}{own})"
        line = f"cosine {c.cosine:.4f} vs fp32" + (f" (floor {cfg.parity_floor})" if floored else "")
        return line + (f"; {heads} (no budget)" if heads else "")

    progress(f"  {target}: quantizing with {quantizer} (calibration {cfg.method}, {len(calib)} samples"
             f"{', 7-bit weights: this CPU has no VNNI' if q.reduce_range else ''})")
    if masks:
        progress(f"  {target}: {len(masks)} mask-like node(s) kept float (attention masks, huge-range constants)")
    cand = make(excluded)
    one = {k: v[:cfg.batch] for k, v in calib.feeds.items()}
    fp32_ms = None
    speed_met = None
    report: dict = {"backend": backend, "batch": cfg.batch, "threads": cfg.threads, "candidates": []}

    def record(c: Candidate, label: str, chosen: bool = False) -> dict:
        e = {"label": label, "float_nodes": len(c.excluded), "int8_ms": c.latency_ms, "fp32_ms": c.fp32_ms,
             "vs_fp32": (c.latency_ms / c.fp32_ms) if c.latency_ms and c.fp32_ms else None,
             **({"interval": [round(c.speed.ratio.low, 4), round(c.speed.ratio.high, 4)], "verdict": c.speed.verdict,
                 "rounds": c.speed.ratio.rounds, "stable": c.speed.stable} if c.speed is not None else {}),
             "cosine": c.cosine,
             "agreement": c.agreement, "drop": c.drop, "valid": valid(c), "qdq_pairs_dropped": c.qdq_removed, "chosen": chosen}
        report["candidates"].append(e)
        return e

    def measure(c: Candidate, label: str) -> float:
        """int8/fp32 latency ratio at the deployed batch, from interleaved rounds with a 95 % interval
        (edgemm.bench.paired): rounds go on until "slower by more than the tolerance?" has a clear answer, or the cap."""
        c.speed = measure_speed(backend, spec, fp32_onnx, "fp32", c.path, "int8", one, cfg.threads,
                                seconds=max(clock.left(), 0.0), tolerance=cfg.speed_tolerance, b_options=probed(c))
        c.fp32_ms, c.latency_ms = c.speed.a_ms, c.speed.b_ms
        return c.latency_ms / c.fp32_ms

    def probed(c: Candidate) -> dict:
        """How its backend can run it (timed as it will be run)."""
        if c.runner is None:
            c.runner = get_backend(backend).probe_runner(c.path, spec, "int8")
        return c.runner

    def slower(c: Candidate) -> bool:  # slower than fp32 by more than the tolerance, with confidence
        return c.speed is not None and c.speed.verdict == "slower"

    if speed_guarded:
        ratio = measure(cand, "default")
        entries = {id(cand): record(cand, "default")}
        progress(f"  {target}: {cand.speed.describe()} at batch {cfg.batch}; {check_line(cand)}")

        def attempt(trial_excl: dict[str, str], label: str) -> None:
            nonlocal cand, excluded, ratio
            if clock.skip(f"speed: {label}"):
                return
            trial = make(trial_excl)
            trial_ratio = measure(trial, label)
            entries[id(trial)] = record(trial, label)
            ok = valid(trial)
            progress(f"  {target}: {label}: {trial.speed.describe()}; "
                     f"{check_line(trial)}{'' if ok else ' -> rejected: fails the check the final artifact must pass'}")
            # only a gain clear of both intervals is worth the float ops
            if ok and trial.speed.ratio.high < cand.speed.ratio.low * (1 - cfg.speed_tolerance):
                cand, excluded, ratio = trial, trial_excl, trial_ratio

        if slower(cand) and get_backend(backend).formats[:1] == ("onnx",) and qz.produces == "onnx" \
                and not clock.skip("speed: per-node profile"):
            # The backend's own per-node profile: keep float the nodes whose int8 kernel + Q/DQ cost more than fp32.
            from .profile import profile_nodes, slower_nodes

            fp32_prof = profile_nodes(pre, one, cfg.threads)
            int8_prof = profile_nodes(cand.path, one, cfg.threads)
            costs = slower_nodes(model, int8_prof, fp32_prof)
            report["profile"] = {"tool": "onnxruntime SessionOptions.enable_profiling (per-iteration medians)",
                                 "fp32_kernel_ms": sum(ms for _, ms in fp32_prof.values()),
                                 "int8_kernel_ms": sum(ms for _, ms in int8_prof.values()),
                                 "int8_by_kernel": _by_kernel(int8_prof), "fp32_by_kernel": _by_kernel(fp32_prof),
                                 "nodes": [c.to_dict() for c in costs]}
            slow = [c for c in costs if c.decision == "float"]
            if slow:
                attempt({**excluded, **{c.node: f"speed: int8 {c.int8_ms:.3f} ms (kernel + its Q/DQ) vs fp32 {c.fp32_ms:.3f} ms "
                                                 f"in the {backend} profile" for c in slow}},
                        f"profile: {len(slow)} node(s) slower in int8 kept float")
        for group in SPEED_GROUPS:
            if not slower(cand):
                break
            nodes = {n.name for n in model.graph.node if n.op_type in group} - set(excluded)
            if not nodes or not {n.name for n in G.weighted_nodes(model)} - set(excluded) - nodes:
                continue  # every weighted layer float would be the fp32 model under an INT8 name
            attempt({**excluded, **{n: f"speed: {'/'.join(group)} runs slower in int8 on {backend} here" for n in nodes}},
                    f"keeping {'/'.join(group)} float")
        fp32_ms = cand.fp32_ms
        speed_met = not slower(cand)
        entries[id(cand)]["chosen"] = True

    sensitivity: list[dict] = []
    if valid(cand) and has_budget:
        progress(f"  {target}: {check_line(cand)}")
    elif not valid(cand) and comparator is not None:
        progress(f"  {target}: {check_line(cand)} -> searching for parts to keep float")
        sensitivity = _sensitivity(q, model, excluded, make, shortfall, has_budget, progress, target, clock)
        best = _fallback_search(cand, excluded, sensitivity, make, {n.name for n in G.weighted_nodes(model)},
                                cfg, progress, target, shortfall, check_line, clock)
        if not valid(best) and not labelled:
            best = cand  # nothing reached the floor: the target's INT8 is left out, the first candidate stands for it
        if best is not cand:
            cand, excluded = best, best.excluded
            if speed_guarded:
                measure(cand, "accuracy fallback")
                fp32_ms = cand.fp32_ms
                speed_met = not slower(cand)
                for e in report["candidates"]:
                    e["chosen"] = False
                record(cand, "accuracy fallback", chosen=True)
    budget_met = within_budget(cand.drop, cfg.max_drop) if has_budget else None
    floor_met = (not below(cand.cosine, cfg.parity_floor)) if floored and cand.cosine is not None else None

    validity = None
    if qz.produces == "onnx" and (target_backend.int8_symmetric_only or qz.symmetric_activations):
        validity = check_trt_qdq(onnx.load(str(cand.path)))  # the symmetric int8 rules TensorRT enforces
    if qz.works_on == "onnx-qdq":
        compacted = G.compact(onnx.load(str(cand.path)))
        onnx.save(compacted, str(cand.path))
    kept = _kept_float_summary(model, excluded)
    search = clock.report()
    if search["capped"]:
        shown = ", ".join(search["skipped"][:4]) + (f" and {len(search['skipped']) - 4} more" if len(search["skipped"]) > 4 else "")
        progress(f"  {target}: the INT8 search stopped at its {cfg.search_minutes:g} min cap (--int8-search-minutes) after "
                 f"{search['seconds']:.0f} s; skipped {len(search['skipped'])} step(s): {shown}")
    report["search"] = search
    if speed_guarded:
        report["result"] = {"vs_fp32": cand.latency_ms / fp32_ms, "int8_ms": cand.latency_ms, "fp32_ms": fp32_ms,
                            "slower": not speed_met, "float_nodes": len(excluded), "cosine": cand.cosine, "drop": cand.drop,
                            "measurement": cand.speed.to_dict()}
    return TargetResult(target, backend, quantizer, cand, fp32_ms, kept, [
        {k: v for k, v in s.items() if k != "nodes"} for s in sensitivity], budget_met, speed_met, validity,
        q.reduce_range if qz.works_on == "onnx-qdq" else None, qz.produces, report if speed_guarded else None,
        floor_met=floor_met, search=search, tasks=dict(tasks), reference=ref)


SCAN_SAMPLES = 32  # calibration samples the mask scan runs (padding shows up in a few of them)


def _scan_ranges(pre: Path, calib: CalibrationSource) -> dict[str, tuple[float, float]]:
    """min/max of every float activation of the fp32 graph over a few calibration samples (the mask scan): the
    quantizer's own calibration may be symmetric, or histogram-based, which an -inf mask breaks."""
    n = min(len(calib), SCAN_SAMPLES)
    subset = CalibrationSource({k: v[:n] for k, v in calib.feeds.items()}, calib.source, calib.sha256, calib.synthetic)
    return calibrate(pre, subset, "minmax", symmetric=False)


def _by_kernel(prof: dict[str, tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for op, ms in prof.values():
        out[op] = out.get(op, 0.0) + ms
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _quantize_inc(target: str, backend: str, fp32_onnx: Path, spec: IOSpec, calib: CalibrationSource, samples: Samples | None,
                  reference: dict[str, float] | None, cfg: PTQConfig, workdir: Path, progress, model) -> TargetResult:
    """INC on the torch model (its own accuracy-aware autotune under a budget), measured on the target like the others.
    The speed guard only measures: INC keeps ops float for accuracy, not for speed."""
    from .inc import IncBudget, inc_quantize

    has_budget = samples is not None and bool(samples.labels) and reference is not None and cfg.max_drop is not None
    budget = IncBudget(samples, reference, cfg.max_drop, cfg.relative, cfg.max_search_steps, cfg.regression_budget) \
        if has_budget else None
    progress(f"  {target}: quantizing with inc (PT2E static, calibration {cfg.method}, {len(calib)} samples"
             f"{', autotune' if budget else ''})")
    res = inc_quantize(model, spec, calib, workdir, method=cfg.method, threads=cfg.threads, budget=budget, progress=progress)
    cand = Candidate(res.path, [res.path], {})
    tasks = {}
    if samples is not None and samples.labels:
        comparator = Comparator(spec, samples.feeds, samples.labels)
        tasks = comparator.tasks
        cand.scores = comparator.scores(comparator.run_artifact(backend, res.path, RunnerOptions(threads=cfg.threads, precision="int8")))
        cand.metrics = {h: sc[PRIMARY[tasks[h]]] for h, sc in cand.scores.items()}
        if reference:
            cand.drops = cfg.budget.drops(reference, cand.metrics, tasks)
            cand.drop = cfg.budget.drop(reference, cand.metrics, tasks)
    fp32_ms = None
    if cfg.speed_guard and backend == target and get_backend(target).device == "cpu":
        one = {k: v[:1] for k, v in calib.feeds.items()}
        cand.speed = measure_speed(target, spec, fp32_onnx, "fp32", cand.path, "int8", one, cfg.threads,
                                   tolerance=cfg.speed_tolerance)
        fp32_ms = cand.fp32_ms = cand.speed.a_ms
        cand.latency_ms = cand.speed.b_ms
        progress(f"  {target}: {cand.speed.describe()} at batch 1 (inc: measured, no speed fallback)")
    budget_met = None
    if has_budget and cand.drop is not None:
        budget_met = within_budget(cand.drop, cfg.max_drop)
        progress(f"  {target}: drop {cand.drop:+.4f} (budget {cfg.max_drop}{' relative' if cfg.relative else ''}; "
                 f"{res.trials} inc trial(s))")
    speed_met = cand.speed.verdict != "slower" if cand.speed is not None else None
    return TargetResult(target, backend, "inc", cand, fp32_ms, res.kept_float, [], budget_met, speed_met,
                        tasks=dict(tasks), reference=dict(reference or {}))


def _quantize_module(target: str, quantizer: str, fp32_onnx: Path, spec: IOSpec, calib: CalibrationSource, samples: Samples | None,
                     reference: dict[str, float] | None, cfg: PTQConfig, workdir: Path, progress, model,
                     checks: dict | None) -> TargetResult:
    """A target that converts the torch model itself (``Backend.converts_module``: LiteRT): its converter quantizes
    with the calibration split, ``cfg.method`` and the precision policy's float parts and op types; the result is
    measured on the target like every INT8 candidate (accuracy vs the reference, cosine and agreement vs the same
    converter's fp32 artifact, interleaved speed vs that fp32). No fallback search: float parts come from the policy."""
    from ...torchutil import example_args, is_program

    torch = lazy_import("torch")
    be = get_backend(target)
    module = model.module() if is_program(model) else model
    args = example_args(spec, {k: v[:2] for k, v in calib.feeds.items()})
    batches = [tuple(torch.from_numpy(np.ascontiguousarray(f[n])) for n in spec.input_names) for f in calib.iter_batches(64)]
    policy = cfg.policy
    progress(f"  {target}: quantizing the torch model with {quantizer} (PT2E static, calibration {cfg.method}, {len(calib)} samples"
             + (f"; float: {', '.join([*policy.float_parts, *policy.exclude_ops])}" if policy.float_parts or policy.exclude_ops else "")
             + ")")
    made = {}
    # the fp32 artifact the compile stage converted from the same module, beside the ONNX in the bundle being written
    compiled = fp32_onnx.parent.parent / be.folder / "model.fp32.tflite"
    if compiled.is_file():
        made["fp32"] = compiled
    for precision in [p for p in ("fp32", "int8") if p not in made]:
        out = workdir / precision
        c = be.compile_module(module, args, out, spec, precision, calibration=batches if precision == "int8" else None,
                              method=cfg.method, float_parts=policy.float_parts, exclude_ops=policy.exclude_ops)[0]
        made[precision] = out / c.main
    cand = Candidate(made["int8"], [made["int8"]], {})
    labelled = samples is not None and bool(samples.labels)
    check_feeds = samples.feeds if samples is not None else checks
    tasks: dict = {}
    if check_feeds is not None:
        comparator = Comparator(spec, check_feeds, samples.labels if labelled else None)
        tasks = comparator.tasks
        fp32_out = comparator.run_artifact(target, made["fp32"], RunnerOptions(threads=cfg.threads, precision="fp32"))
        out = comparator.run_artifact(target, made["int8"], RunnerOptions(threads=cfg.threads, precision="int8"))
        cand.cosine = min(v["cosine"] for v in comparator.parity(fp32_out, out).values())
        cand.agreement = min(comparator.agreement(fp32_out, out, classification_only=True).values(), default=None)
        if labelled:
            cand.scores = comparator.scores(out)
            cand.metrics = {h: sc[PRIMARY[tasks[h]]] for h, sc in cand.scores.items()}
            if reference:
                cand.drops = cfg.budget.drops(reference, cand.metrics, tasks)
                cand.drop = cfg.budget.drop(reference, cand.metrics, tasks)
    fp32_ms = None
    if cfg.speed_guard and be.device == "cpu":
        one = {k: v[:1] for k, v in calib.feeds.items()}
        cand.speed = measure_speed(target, spec, made["fp32"], "fp32", made["int8"], "int8", one, cfg.threads,
                                   tolerance=cfg.speed_tolerance)
        fp32_ms = cand.fp32_ms = cand.speed.a_ms
        cand.latency_ms = cand.speed.b_ms
        progress(f"  {target}: {cand.speed.describe()} at batch 1")
    budget_met = within_budget(cand.drop, cfg.max_drop) if labelled and reference and cfg.max_drop is not None \
        and cand.drop is not None else None
    if budget_met is not None:
        progress(f"  {target}: drop {cand.drop:+.4f} (budget {cfg.max_drop}{' relative' if cfg.relative else ''})")
    floor_met = cand.cosine >= cfg.parity_floor if check_feeds is not None and not labelled and cand.cosine is not None else None
    speed_met = cand.speed.verdict != "slower" if cand.speed is not None else None
    kept = [{"reason": "policy", "nodes": len(policy.float_parts) + len(policy.exclude_ops),
             "layers": [*policy.float_parts, *policy.exclude_ops]}] if policy.float_parts or policy.exclude_ops else []
    return TargetResult(target, target, quantizer, cand, fp32_ms, kept, [], budget_met, speed_met, format="tflite",
                        floor_met=floor_met, tasks=dict(tasks), reference=dict(reference or {}))


def _fallback_search(cand: Candidate, excluded: dict[str, str], sensitivity: list[dict], make, weighted: set[str],
                     cfg: PTQConfig, progress, target: str, shortfall, check_line, clock: SearchClock) -> Candidate:
    """Keep parts float until the check holds (the budget with labels, the parity floor without): single layers
    cumulatively (most harmful first, at most ``max_search_steps``), then each whole modality branch on its own.
    Returns the best candidate seen (least ``shortfall``). Never keeps every weighted layer float: that would be
    the fp32 model under an INT8 name."""
    def reason(e: dict) -> str:
        return f"accuracy: {e['part']} costs {e['drop']:+.4f} {e['measure']} quantized alone"

    steps, acc = [], dict(excluded)
    for e in [e for e in sensitivity if e["part"].startswith("layer:")][: cfg.max_search_steps]:
        acc = {**acc, **{n: reason(e) for n in e["nodes"]}}
        steps.append((f"+ {e['part']}", acc))
    steps += [(e["part"], {**excluded, **{n: reason(e) for n in e["nodes"]}})
              for e in sensitivity if e["part"].startswith("branch:")]
    best = cand
    for label, excl in steps:
        if shortfall(best) <= BUDGET_TOLERANCE:
            break
        if not weighted - set(excl):
            continue
        if clock.skip(f"accuracy: {label} float"):
            continue
        trial = make(excl)
        progress(f"  {target}: {label} float -> {check_line(trial)}")
        if shortfall(trial) < shortfall(best):
            best = trial
    return best


def _sensitivity(q: _CandidateBuilder, model, excluded, make, shortfall, has_budget: bool, progress, target,
                 clock: SearchClock) -> list[dict]:
    """How much each part costs quantized alone (everything else float): branches, then single weighted layers.
    ``drop``: the budget's drop with a budget, else the cosine lost vs fp32 (``measure`` says which)."""
    progress(f"  {target}: ranking parts by sensitivity (each quantized alone)")
    parts: list[tuple[str, set[str]]] = []
    for branch, nodes in G.branch_nodes(model).items():
        parts.append((f"branch:{branch}", set(nodes)))
    segments = G.layer_segments(model)
    branches = G.node_branches(model)
    for n in G.weighted_nodes(model):
        parts.append((f"layer:{n.name} ({n.op_type}, {branches[n.name]})", segments[n.name]))
    out = []
    for part, nodes in parts:
        if nodes <= set(excluded):
            continue
        if clock.skip(f"sensitivity: {part}"):
            continue
        c = make(excluded, only=nodes - set(excluded))
        harm = shortfall(c)
        if has_budget and c.drop is not None:
            drop, measure = c.drop, "drop"
        else:
            drop, measure = (1.0 - c.cosine) if c.cosine is not None and not math.isnan(c.cosine) else math.inf, "cosine"
        out.append({"part": part, "drop": float(drop), "measure": measure, "cosine": c.cosine, "harm": harm,
                    "nodes": sorted(nodes)})
    # Layers first (fewest nodes kept float), most harmful first; branches after them.
    out.sort(key=lambda e: (e["part"].startswith("branch:"), -e["harm"]))
    for e in out:
        e.pop("harm")
    return out


def _kept_float_summary(model, excluded: dict[str, str]) -> list[dict]:
    """Group float-kept nodes by reason; weighted layers named one by one."""
    weighted = {n.name: n.op_type for n in G.weighted_nodes(model)}
    by_reason: dict[str, list[str]] = {}
    for node, reason in excluded.items():
        by_reason.setdefault(reason, []).append(node)
    return [{"reason": reason, "nodes": len(nodes), "layers": sorted(n for n in nodes if n in weighted)}
            for reason, nodes in sorted(by_reason.items())]


def install(result: TargetResult, dest_dir: Path, stem: str) -> list[Path]:
    """Move the chosen candidate's files into the bundle as ``dest_dir/stem.<ext>``."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for f in result.candidate.files:  # an IR's .bin is found by the .xml's stem: both get the same stem
        target = dest_dir / (stem + f.suffix)
        shutil.copyfile(f, target)
        out.append(target)
    return out
