"""Verify: every artifact of a bundle against the fp32 reference.

Parity: max-abs, mean-abs and cosine per output on held-out samples (the bundle's own
``data/parity_samples.npz``, taken from the evaluation split at export time). Accuracy: each head's
task metric (``edgemm.metrics``: top-1 of a classification head and MAE/RMSE of a regression head on
the evaluation split, cosine/recall@k of an embedding head against the reference's embeddings of the
parity samples), for the reference and each artifact, plus a modality ablation of the reference
(each image/audio input blanked: a black frame, silence).
Latency: a short batch-1 timing per artifact (the full matrix is ``edgemm bench``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import metrics
from ..backends.base import RunnerOptions
from ..bench.stats import fmt_ms
from ..backends.registry import get_backend, reference_backend
from ..bundle import Artifact, Bundle
from ..compare import Comparator
from ..data.datasets import Samples, load_samples, read_outputs
from ..safeio import read_npz
from ..data.preprocess import preprocess_input
from ..errors import EdgemmError, ParityError, switch
from ..iospec import AudioPreprocess, ImagePreprocess, IOSpec
from ..log import logger, step
from .options.verify import VerifyConfig


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def blank_feeds(spec: IOSpec, name: str, n: int) -> np.ndarray:
    """What a missing modality looks like at run time, as model-level tensors: a black frame / silence."""
    t = spec.input(name)
    pre = t.preprocessing
    if isinstance(pre, ImagePreprocess):
        one = preprocess_input(t, np.zeros((*pre.size, 3), np.uint8), base_dir=Path("."))
    elif isinstance(pre, AudioPreprocess):
        one = preprocess_input(t, np.zeros(pre.n_samples, np.float32), base_dir=Path("."))
    else:
        raise EdgemmError(f"no blank for {t.modality} input {name!r}")
    return np.repeat(one, n, axis=0)


@dataclass
class VerifyResult:
    parity: dict[str, Any]
    accuracy: dict[str, Any] | None
    latency: dict[str, Any]
    breaches: list[str] = field(default_factory=list)

    def reports(self) -> dict[str, dict]:
        out = {"parity": self.parity, "latency": self.latency}
        if self.accuracy is not None:
            out["accuracy"] = self.accuracy
        return out

    @classmethod
    def from_bundle(cls, bundle) -> "VerifyResult | None":
        """The last verification of ``bundle`` as written in its reports (None: never verified)."""
        parity, latency = bundle.report("parity"), bundle.report("latency")
        if parity is None or latency is None:
            return None
        return cls(parity, bundle.report("accuracy"), latency)

    def raise_on_breach(self) -> None:
        if self.breaches:
            raise ParityError(f"{self.breaches[0]}" + (f" (and {len(self.breaches) - 1} more, see reports/parity.json)" if len(self.breaches) > 1 else ""))

    def summary(self) -> str:
        lines = []
        acc = self.accuracy
        if acc:
            ref = acc["reference"]["metrics"]
            tasks = acc["reference"].get("task", {})

            def name(h: str) -> str:  # the metric a head is reported by (reports before tasks: top1)
                return metrics.PRIMARY.get(tasks.get(h, "classification"), "top1")

            def drop(a: dict, h: str) -> str:
                d = a.get("drop", {}).get(h)
                return "drop not measured" if d is None else f"{'MAE' if name(h) == 'mae' else 'drop'} {d:+.4f}"

            lines.append(f"accuracy on {acc['samples']} held-out samples ({acc['source']}):")
            ref_of = f"reference {acc['reference'].get('backend', 'torch')} {acc['reference'].get('precision', 'fp32')}"
            lines.append(f"  {ref_of:<42} " + "  ".join(f"{h} {name(h)} {v:.4f}" for h, v in ref.items()))
            for label, ab in acc.get("ablation", {}).items():
                lines.append(f"  {'  ' + label:<42} " + "  ".join(f"{h} {name(h)} {v:.4f}" for h, v in ab.items()))
            for aid, a in acc["artifacts"].items():
                lines.append(f"  {aid + ' (' + a['backend'] + ' ' + a['precision'] + ')':<42} "
                             + "  ".join(f"{h} {name(h)} {v:.4f} ({drop(a, h)})" for h, v in a["metrics"].items()))
        else:
            lines.append("accuracy: no labelled evaluation data (parity only)")
        lines.append(f"parity vs the fp32 reference on {self.parity['samples']} held-out samples:")
        for aid, a in self.parity["artifacts"].items():
            if "skipped" in a or "error" in a:
                lines.append(f"  {aid:<42} {'skipped: ' + a['skipped'] if 'skipped' in a else 'BREACH: ' + a['error']}")
                continue
            worst = min(o["cosine"] for o in a["outputs"].values())
            mabs = max(o["max_abs"] for o in a["outputs"].values())
            lines.append(f"  {aid + ' (' + a['backend'] + ' ' + a['precision'] + ')':<42} min cosine {worst:.7f}  max abs {mabs:.2e}")
        lines += latency_lines(self.latency)
        return "\n".join(lines)


def latency_lines(lat: dict) -> list[str]:
    """The latency table of a verification: median / p90 per artifact (``~``: its timing was unstable); an int8
    artifact with a recorded int8-vs-fp32 measurement shows it (rows marked ``=``) with the verdict it gave, so
    the numbers and the verdict come from one measurement."""
    lines = [f"latency, batch {lat['batch']}, {lat['threads']} threads (median / p90 ms; full matrix: edgemm bench):"]
    speed = lat.get("speed") or {}
    paired = any(r.get("source", "").startswith("int8-vs-fp32") for r in lat["runs"])
    for r in lat["runs"]:
        mark = "~" if not r.get("stable", True) else " "
        how = "=" if r.get("source", "").startswith("int8-vs-fp32") else " "
        own = f"  ({r['threads']} thread{'s' if r['threads'] != 1 else ''}: the export's choice)" \
            if r.get("threads_from") == "export" else ""
        lines.append(f" {how}{r['artifact'] + ' (' + r['backend'] + ' ' + r['precision'] + ')':<42} "
                     f"{mark}{fmt_ms(r['p50_ms'])} / {fmt_ms(r['p90_ms'])}{own}")
        v = speed.get(r["artifact"])
        if v and v.get("text"):
            lines.append(f"    {v['text']} (x{v['vs_fp32']:.2f} = {fmt_ms(r['p50_ms'])} / {fmt_ms(_p50(lat, v['fp32']))} ms)")
    if paired:
        lines.append("  =: int8 and its fp32 timed together, interleaved in one process: the speed verdict's measurement")
        rank = (lat.get("ranking") or {}).get("p50_ms") or {}
        if rank:  # the = rows' medians do not compare with the others': this is the order edgemm.load follows
            lines.append("  each in its own process, one benchmark (edgemm.load's order): "
                         + ", ".join(f"{a} {fmt_ms(ms)}" for a, ms in sorted(rank.items(), key=lambda kv: kv[1])))
    return lines


def _p50(lat: dict, artifact: str) -> float:
    return next(r["p50_ms"] for r in lat["runs"] if r["artifact"] == artifact)


def _tolerance(art: Artifact, cfg: VerifyConfig) -> float:
    return {"fp32": cfg.cosine_min, "fp16": cfg.cosine_min_fp16}.get(art.precision, cfg.cosine_min_int8)


def verify(
    bundle: Bundle | str | os.PathLike,
    *,
    evaluation: str | os.PathLike | None = None,
    samples: Samples | Mapping[str, Samples | None] | None = None,
    config: VerifyConfig | None = None,
    reference_module=None,
    threads: int | None = None,
    write: bool = True,
    latency: bool = True,
    trust_code: bool | None = None,
    graph: str | None = None,
) -> VerifyResult:
    """Compare every artifact of ``bundle`` (every graph, or ``graph``) with the fp32 reference; write the reports;
    raise on a breach.

    The reference is the user's live module (at export), else the outputs of the fp32 torch reference stored in the
    bundle at export; ``trust_code=True`` runs the bundle's torch program instead (it is unpickled: see edgemm.trust).
    ``samples`` / ``reference_module`` may be keyed by graph name.
    """
    from ..trust import allow_code, code_allowed

    root = bundle.root if isinstance(bundle, Bundle) else Path(bundle)
    trusted = code_allowed(root, trust_code)  # the argument, else the caller's allow_code() context (the CLI's --trust-code)
    with allow_code(trusted):
        if not isinstance(bundle, Bundle):
            bundle = Bundle.open(bundle)
        names = [bundle.check_graph(graph)] if graph is not None else bundle.graphs()
        results = {}
        for g in names:
            view = bundle if len(bundle.graphs()) == 1 else bundle.graph(g)
            results[g] = _verify_bundle(view, evaluation, _of_graph(samples, g), config, _of_graph(reference_module, g), threads,
                                        latency, trusted)
        result = results[names[0]] if len(results) == 1 else merge_results(results)
        if write:
            bundle.write_reports(result.reports())  # one update under the bundle's lock
        result.raise_on_breach()  # reports are written first, so a breach is on record
        return result


def _of_graph(value, graph: str):
    """A per-graph argument: ``{graph: value}`` picks the graph's; anything else applies to every graph."""
    return value.get(graph) if isinstance(value, Mapping) else value


def merge_results(results: Mapping[str, VerifyResult]) -> VerifyResult:
    """One result for a multi-graph bundle: artifact rows of every graph (their ids are unique bundle-wide), the
    per-graph headers under ``graphs``, the default (first) graph's headers at the top level."""
    first = next(iter(results.values()))
    parity = {**first.parity, "artifacts": {}, "graphs": {}}
    for g, r in results.items():
        parity["artifacts"].update({k: {**v, "graph": g} for k, v in r.parity["artifacts"].items()})
        parity["graphs"][g] = {k: v for k, v in r.parity.items() if k != "artifacts"}
    accuracy = None
    if any(r.accuracy is not None for r in results.values()):
        base = next(r.accuracy for r in results.values() if r.accuracy is not None)
        accuracy = {**base, "artifacts": {}, "sensitivity": [], "graphs": {}}
        for g, r in results.items():
            if r.accuracy is None:
                continue
            accuracy["artifacts"].update({k: {**v, "graph": g} for k, v in r.accuracy["artifacts"].items()})
            accuracy["sensitivity"] += [{**e, "graph": g} for e in r.accuracy["sensitivity"]]
            accuracy["graphs"][g] = {k: v for k, v in r.accuracy.items() if k not in ("artifacts", "sensitivity")}
    runs = [{**row, "graph": g} for g, r in results.items() for row in r.latency["runs"]]
    latency = {**first.latency, "runs": runs}
    rankings = [r.latency["ranking"] for r in results.values() if r.latency.get("ranking")]
    if rankings:
        latency["ranking"] = {**rankings[0], "p50_ms": {k: v for rk in rankings for k, v in rk["p50_ms"].items()}}
    return VerifyResult(parity, accuracy, latency, [b for r in results.values() for b in r.breaches])


def _verify_bundle(bundle, evaluation, samples, config, reference_module, threads, latency, trust_code) -> VerifyResult:
    """One graph (``bundle``: a single-graph Bundle or a GraphView)."""
    m = bundle.manifest
    stored = m.get("verify", {})
    cfg = config or VerifyConfig(**{k: v for k, v in stored.items() if k in ("cosine_min", "cosine_min_fp16", "cosine_min_int8", "max_abs", "batch")})
    threads = threads or default_threads()
    options = RunnerOptions(threads=threads)
    spec = bundle.spec
    ref_backend = reference_backend()

    parity_meta = m.get("parity_samples", {})
    parity_path = bundle.file(parity_meta.get("path", "data/parity_samples.npz"), "parity samples path")
    if not parity_path.is_file():
        raise EdgemmError(f"{parity_path} is missing from the bundle; re-export it")
    parity_feeds = spec.check_feeds(read_npz(parity_path, "parity samples", need_rows=True, fix="re-export the bundle"),
                                    f"{parity_path.name}: ")
    parity_cmp = Comparator(spec, parity_feeds, batch=cfg.batch)

    if samples is None:
        src = evaluation or m.get("evaluation", {}).get("source")
        if src and not evaluation and not Path(src).is_absolute():  # a relative source travels with the bundle
            src = str(bundle.file(src, "evaluation source"))
        if src and Path(src).exists():
            with step(f"reading evaluation data {src}"):
                samples = _load_eval(src, bundle, spec, cfg.eval_limit)
        elif evaluation:
            raise EdgemmError(f"evaluation data {evaluation} not found; pass --eval PATH (an .npz with inputs + labels)")
        elif src:
            logger.warning("warning: evaluation data %s recorded at export is not on this machine; parity only (pass --eval PATH)", src)
    eval_cmp = Comparator(spec, samples.feeds, samples.labels, batch=cfg.batch, source=samples.source) if samples is not None else None
    # A bundle exported from the user's ONNX has no torch program: its fp32 ONNX is the reference, run by its backend
    # with nothing to unpickle, so new evaluation data needs no trust there.
    ref_art = reference_artifact(bundle)
    ref_name = ref_art.backend if ref_art is not None else ref_backend.name
    onnx_reference = ref_art is not None and ref_art.backend != ref_backend.name
    new_eval = bool(evaluation) and reference_module is None and not same_evaluation(evaluation, bundle)
    if new_eval and not trust_code and stored and not onnx_reference:
        raise EdgemmError(f"evaluating on {evaluation} needs the reference model run on it: pass {switch('trust_code')} (it "
                          "loads the bundle's torch program, which unpickles), or verify on the evaluation data recorded at export")

    # The reference: the user's live module (at export), else the bundle's torch program when the user trusts it,
    # else the reference outputs stored at export (a bundle is data: nothing in it is unpickled unless asked).
    reference = None
    stored = parity_meta.get("reference_outputs")
    if reference_module is not None:
        reference = ref_backend.runner_for_module(reference_module, spec, options)
        ref_label, ref_name = f"the user's model ({ref_backend.name} eager fp32)", ref_backend.name
    elif trust_code or not stored or (onnx_reference and new_eval):
        if ref_art is None:
            raise EdgemmError(f"bundle {bundle.root} has no fp32 reference artifact ({ref_backend.name} program or the "
                              "fp32 ONNX it was exported from); re-export it")
        reference = get_backend(ref_art.backend).create_runner(bundle.file(ref_art.path, "artifact path"), spec, options)
        ref_label = f"{ref_art.path} ({ref_art.backend} fp32)"
    else:
        ref_label = f"{stored} (outputs of the {ref_name} fp32 reference stored at export)"
    try:
        return _verify(bundle, spec, cfg, options, threads, reference, ref_label, parity_cmp, eval_cmp, stored,
                       reference_module is not None, latency, trust_code, ref_name)
    finally:
        if reference is not None:
            reference.close()


def _verify(bundle: Bundle, spec: IOSpec, cfg: VerifyConfig, options: RunnerOptions, threads: int, reference, ref_label: str,
            parity_cmp: Comparator, eval_cmp: Comparator | None, stored: str | None, live_reference: bool,
            latency: bool, trust_code: bool, ref_name: str) -> VerifyResult:
    m = bundle.manifest
    has_labels = eval_cmp is not None and eval_cmp.labelled
    if reference is not None:
        ref_parity = parity_cmp.run(reference)
    else:
        ref_parity = read_outputs(bundle.file(stored, "reference outputs path"), spec, len(parity_cmp), "reference outputs",
                                  "re-export the bundle")
    pruned_rel = m.get("parity_samples", {}).get("pruned_reference_outputs")
    pruned_parity = read_outputs(bundle.file(pruned_rel, "reference outputs path"), spec, len(parity_cmp), "pruned reference outputs",
                                 "re-export the bundle") if pruned_rel else None
    parity = {"samples": len(parity_cmp), "reference": ref_label,
              "source": m.get("parity_samples", {}).get("source"), "artifacts": {}}
    accuracy = None
    tasks = {**parity_cmp.tasks, **(eval_cmp.tasks if eval_cmp is not None else {})}  # head -> task (edgemm.metrics)
    if has_labels:
        ref_metrics, ablation = _reference_accuracy(bundle, spec, reference, eval_cmp)
        # Embedding heads: the reference's own embeddings of the parity samples (recall@1 of itself, cosine 1).
        ref_scores = _embedding_scores(parity_cmp, tasks, ref_parity, ref_parity)
        ref_metrics = {**ref_metrics, **{h: sc[metrics.PRIMARY["embedding"]] for h, sc in ref_scores.items()}}
        accuracy = {"split": "eval", "samples": len(eval_cmp), "source": samples_source(eval_cmp, m),
                    "reference": {"backend": ref_name, "precision": "fp32", "metrics": ref_metrics,
                                  "task": {h: tasks.get(h, "classification") for h in ref_metrics}},
                    "ablation": ablation, "artifacts": {}, "sensitivity": []}

    breaches = []
    for art in bundle.artifacts:
        if get_backend(art.backend).reference and not live_reference:
            continue  # the reference artifact *is* the reference here
        aid = bundle.artifact_id(art)
        backend = get_backend(art.backend)
        av = backend.availability()
        if not av.available:
            parity["artifacts"][aid] = {"backend": art.backend, "precision": art.precision, "skipped": f"backend unavailable: {av.reason}"}
            continue
        if not backend.runs(art.format):
            parity["artifacts"][aid] = {"backend": art.backend, "precision": art.precision,
                                        "skipped": f"{art.format} file: {art.backend} builds its own artifact from it (edgemm compile)"}
            continue
        with step(f"verifying {aid} on {art.backend} ({art.precision})"), \
                backend.create_runner(bundle.file(art.path, "artifact path"), spec,
                                      RunnerOptions.for_artifact(art, backend.device, threads=options.threads)) as runner:
            try:
                out = parity_cmp.run(runner)
            except ParityError as exc:  # outputs that do not match the spec (a plugin's runner): this artifact's breach
                parity["artifacts"][aid] = {"backend": art.backend, "precision": art.precision, "error": str(exc)}
                breaches.append(str(exc))
                continue
            pruned = bool(art.extra.get("pruned")) and pruned_parity is not None
            # A pruned artifact computes the pruned model: parity against that model's outputs (stored at export),
            # accuracy (below) against the user's original model.
            per_output = parity_cmp.parity(pruned_parity if pruned else ref_parity, out)
            parity["artifacts"][aid] = {"backend": art.backend, "precision": art.precision, "outputs": per_output,
                                        **({"reference": pruned_rel} if pruned else {})}
            floor = _tolerance(art, cfg)
            # INT8 is judged by the task metric and its budget when labels exist; parity alone otherwise.
            enforce = art.precision != "int8" or accuracy is None
            for name, st in per_output.items():
                if "non_finite" in st:
                    breaches.append(f"parity breach: {aid} ({art.backend} {art.precision}) output {name!r} has "
                                    f"{st['non_finite']} non-finite values (inf/NaN)")
                elif enforce and metrics.below(st["cosine"], floor):
                    breaches.append(f"parity breach: {aid} ({art.backend} {art.precision}) output {name!r} cosine {st['cosine']:.6f} < {floor}")
                if cfg.max_abs is not None and art.precision == "fp32" and st["max_abs"] > cfg.max_abs:
                    breaches.append(f"parity breach: {aid} ({art.backend} {art.precision}) output {name!r} max_abs {st['max_abs']:.3g} > {cfg.max_abs}")
            if accuracy is not None:
                scores = eval_cmp.scores(eval_cmp.run(runner))  # classification and regression heads, on their labels
                scores.update(_embedding_scores(parity_cmp, tasks, out, ref_parity))
                got = {h: sc[metrics.PRIMARY[tasks[h]]] for h, sc in scores.items()}
                ref_metrics = accuracy["reference"]["metrics"]
                accuracy["artifacts"][aid] = {
                    "path": art.path, "backend": art.backend, "precision": art.precision, "target": art.target,
                    "method": art.method, "kept_float": art.extra.get("kept_float", []), "metrics": got,
                    # top-1 / recall points lost; for a regression head the MAE increase (in the targets' units)
                    "drop": {h: metrics.head_drop(tasks[h], ref_metrics[h], v) for h, v in got.items() if h in ref_metrics},
                    "task": {h: tasks[h] for h in got}, "scores": scores,
                    "size_mb": round(art.size_bytes(bundle.root) / 1e6, 4),
                }
                for key in ("quantizer", "calibration_method", "budget", "speed", "tensorrt_qdq_check"):
                    if key in art.extra:
                        accuracy["artifacts"][aid][key] = art.extra[key]
                for entry in art.extra.get("sensitivity", []):
                    accuracy["sensitivity"].append({"target": art.target, **entry})
    runs = []
    speed = {}
    ranking: dict[str, float] = {}
    if latency:
        # Each artifact in its own process (the bench worker): thread pools of torch, ONNX Runtime and OpenVINO
        # spinning in one process on a small CPU distort each other's timings by 10-100x. An int8 artifact with a
        # recorded int8-vs-fp32 measurement (the export's speed check, or `edgemm bench --decide`) and its fp32
        # sibling show that measurement: the one the manifest's verdict rests on, so table and verdict agree.
        # They are timed in their own processes too, with every other artifact in the same benchmark: the
        # ``ranking`` edgemm.load orders artifacts by (the paired rounds ran in another process, at another time,
        # under another load: their medians do not compare with the other rows').
        from ..bench.run import BenchConfig, benchmark
        from ..bench.stats import machine_state, state_problems

        pairs, speed = speed_rows(bundle)
        with step("timing every artifact at batch 1, each in its own process"):
            whole, graph = (bundle.bundle, bundle.graph_name) if hasattr(bundle, "graph_name") else (bundle, None)
            broken = tuple(aid for aid, a in parity["artifacts"].items() if "error" in a)  # their breach is on record
            before = machine_state()
            res = benchmark(whole, BenchConfig(batches=(1,), modes=("model",), seconds=0.5, rounds=1, threads=threads, graph=graph,
                                               exclude=broken, extra_rounds=0, warn_unstable=False, recorded_threads=True,
                                               trust_code=trust_code or live_reference)) \
                if _timed_elsewhere(bundle, broken) else {"runs": []}
        for r in res["runs"]:
            if not r["baseline"]:
                ranking[r["id"]] = round(r["p50_ms"], 4)
            if r["id"] in pairs:
                continue  # its table row is the paired measurement
            runs.append({"artifact": "reference" if r["baseline"] else r["id"], "backend": r["backend"], "precision": r["precision"],
                         "baseline": r["baseline"], **{k: round(r[k], 4) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")},
                         "iterations": r["iterations"], "peak_rss_mb": r["peak_rss_mb"], "threads": r["threads"],
                         **({"threads_from": "export"} if r["threads"] != res["config"]["threads"] else {}),
                         "stable": (r.get("stability") or {}).get("stable", True), "source": "own process"})
        runs += list(pairs.values())
        problems = state_problems(before, machine_state())
        shaky = [r["artifact"] for r in runs if not r.get("stable", True)]
        if problems or shaky:  # it qualifies the latency table: shown with it (hidden with -q, as the table is)
            logger.info("warning: latency timings unstable (%s); numbers from them are marked ~ in the table; rerun "
                           "`edgemm verify` on a quiet machine, or `edgemm bench` for repeated rounds",
                           "; ".join([*problems, *([f"wide tails: {', '.join(shaky[:3])}"] if shaky else [])]))
    rank = {"source": "each artifact in its own process, one benchmark (what edgemm.load orders artifacts by)",
            "p50_ms": ranking} if ranking else {}
    return VerifyResult(parity, accuracy, {"batch": 1, "threads": threads, "mode": "model", "runs": runs,
                                           **({"speed": speed} if speed else {}), **({"ranking": rank} if rank else {})},
                        breaches)


def reference_artifact(bundle) -> Artifact | None:
    """The artifact the fp32 reference is: the torch program, else the fp32 ONNX the user exported from (marked
    ``reference`` in its extra); None when the bundle has neither."""
    refs = bundle.select(backend=reference_backend().name, precision="fp32")
    if refs:
        return refs[0]
    own = [a for a in bundle.artifacts if a.precision == "fp32" and isinstance(a.extra, dict) and a.extra.get("reference")]
    return own[0] if own else None


def same_evaluation(evaluation: str | os.PathLike, bundle) -> bool:
    """Whether ``evaluation`` is the data recorded at export: the same bytes (sha256), or the recorded path itself (the
    copy inside the bundle, whose bytes the manifest may not hash)."""
    from ..files import sha256_file

    ev = bundle.manifest.get("evaluation", {})
    path = Path(evaluation)
    if ev.get("sha256") and path.is_file() and sha256_file(path) == ev["sha256"]:
        return True
    src = ev.get("source")
    if not src:
        return False
    if str(evaluation) == src:
        return True
    recorded = Path(src) if Path(src).is_absolute() else bundle.root / src
    return path.exists() and recorded.exists() and path.resolve() == recorded.resolve()


def _timed_elsewhere(bundle, excluded: tuple[str, ...]) -> bool:
    """Whether anything is left for the bench workers to time once ``excluded`` artifacts are taken out."""
    return any(bundle.artifact_id(a) not in excluded for a in bundle.artifacts)


def speed_rows(bundle) -> tuple[dict[str, dict], dict[str, dict]]:
    """Latency rows taken from each recorded int8-vs-fp32 measurement (the manifest's ``speed`` of an int8 artifact:
    medians and tails of both sides, timed interleaved in one process), keyed by artifact id, for the int8 artifact
    and its fp32 sibling on the same backend; and per int8 artifact the verdict with its interval. Bundles written
    before the measurement kept its tails get no rows (their artifacts are timed like the others)."""
    rows: dict[str, dict] = {}
    verdicts: dict[str, dict] = {}
    for a in bundle.artifacts:
        sp = a.extra.get("speed") if isinstance(a.extra, dict) else None
        if a.precision != "int8" or not isinstance(sp, dict) or sp.get("int8_p90_ms") is None or not sp.get("fp32_ms"):
            continue
        if sp.get("backend", a.backend) != a.backend:
            continue
        fp32 = [f for f in bundle.artifacts if f.precision == "fp32" and f.backend == a.backend and f.graph == a.graph]
        fp32 = sorted(fp32, key=lambda f: f.format != a.format)[:1]
        aid = bundle.artifact_id(a)
        if not fp32 or bundle.artifact_id(fp32[0]) in rows:
            continue  # no sibling to pair with, or it already shows another int8's measurement
        stable = bool(sp.get("stable", True))
        source = f"int8-vs-fp32 measurement ({sp.get('measured_by', 'export')}, {sp.get('rounds', '?')} interleaved rounds)"
        for art, side in ((fp32[0], "fp32"), (a, "int8")):
            rows[bundle.artifact_id(art)] = {
                "artifact": bundle.artifact_id(art), "backend": art.backend, "precision": art.precision, "baseline": False,
                "p50_ms": round(sp[f"{side}_ms"], 4), "p90_ms": round(sp[f"{side}_p90_ms"], 4),
                "p99_ms": round(sp.get(f"{side}_p99_ms") or sp[f"{side}_p90_ms"], 4), "stable": stable, "source": source,
                **({"paired_with": aid} if side == "fp32" else {})}
        verdicts[aid] = {k: sp.get(k) for k in ("vs_fp32", "interval", "confidence", "tolerance", "verdict", "slower",
                                                  "rounds", "stable", "text", "measured_by")}
        verdicts[aid]["fp32"] = bundle.artifact_id(fp32[0])
    return rows, verdicts


def _load_eval(src, bundle, spec: IOSpec, limit: int | None) -> Samples:
    """The evaluation split for one graph: a multi-graph bundle's file keys inputs ``graph/name`` where graphs share one."""
    from ..bundle import GraphView

    if not isinstance(bundle, GraphView) or len(bundle.bundle.graphs()) == 1:
        return load_samples(src, spec, limit=limit)
    from ..data.datasets import samples_from_arrays
    from ..data.graphs import graph_arrays, read_arrays

    arrays = graph_arrays(read_arrays(src), bundle.graph_name, spec)
    return samples_from_arrays(arrays, spec, f"{src} (graph {bundle.graph_name!r})", Path(src).parent, limit)


def samples_source(cmp: Comparator, manifest: dict) -> str | None:
    return cmp.source or manifest.get("evaluation", {}).get("source")


def _embedding_scores(parity_cmp: Comparator, tasks: Mapping[str, str], out, ref_parity) -> dict[str, dict[str, float]]:
    """cosine / recall@k of every embedding head of ``out`` against the reference's embeddings of the parity samples."""
    return {h: sc for h, sc in parity_cmp.scores(out, ref_parity).items() if tasks.get(h) == "embedding"}


def _reference_accuracy(bundle: Bundle, spec: IOSpec, reference, eval_cmp: Comparator):
    """The reference's task metric per labelled head (top-1, MAE) and its modality ablation; from the stored accuracy
    report when the reference is not run."""
    if reference is None:
        stored = (bundle.report("accuracy") or {}).get("reference", {}).get("metrics")
        if not stored:
            raise EdgemmError(f"bundle {bundle.root} records no reference accuracy; re-export it, or pass --trust-code to run "
                              "its torch reference")
        return stored, (bundle.report("accuracy") or {}).get("ablation", {})
    with step(f"evaluating the reference on {len(eval_cmp)} samples"):
        ref_metrics = eval_cmp.task_metrics(eval_cmp.run(reference))
    ablation = {}
    for t in spec.inputs:
        if isinstance(t.preprocessing, (ImagePreprocess, AudioPreprocess)):
            feeds = dict(eval_cmp.feeds)
            feeds[t.name] = blank_feeds(spec, t.name, len(eval_cmp))
            blank = Comparator(spec, feeds, eval_cmp.labels, batch=eval_cmp.batch)
            ablation[f"without {t.name} (blank {t.modality})"] = blank.task_metrics(blank.run(reference))
    return ref_metrics, ablation
