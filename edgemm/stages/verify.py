"""Verify: every artifact of a bundle against the fp32 reference.

Parity: max-abs, mean-abs and cosine per output on held-out samples (the bundle's own
``data/parity_samples.npz``, taken from the evaluation split at export time). Accuracy: top-1
per classification head on the evaluation split, for the reference and each artifact, plus a
modality ablation of the reference (each image/audio input blanked: a black frame, silence).
Latency: a short batch-1 timing per artifact (the full matrix is ``edgemm bench``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import RunnerOptions
from ..backends.registry import get_backend
from ..bundle import Artifact, Bundle
from ..data.datasets import Samples, load_samples
from ..data.preprocess import preprocess_input
from ..errors import EdgemmError, ParityError
from ..iospec import AudioPreprocess, ImagePreprocess, IOSpec
from ..log import logger, step
from ..recipe import VerifyConfig


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def compare(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    a = ref.astype(np.float64).ravel()
    b = out.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
    diff = np.abs(a - b)
    return {"max_abs": float(diff.max(initial=0.0)), "mean_abs": float(diff.mean()) if diff.size else 0.0, "cosine": cosine}


def run_batched(runner, feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    n = len(next(iter(feeds.values())))
    parts: dict[str, list] = {}
    for s in range(0, n, batch):
        out = runner.infer({k: v[s:s + batch] for k, v in feeds.items()})
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def top1(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, float]:
    return {head: float((logits[head].argmax(-1) == y).mean()) for head, y in labels.items() if head in logits}


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

    def raise_on_breach(self) -> None:
        if self.breaches:
            raise ParityError(f"{self.breaches[0]}" + (f" (and {len(self.breaches) - 1} more, see reports/parity.json)" if len(self.breaches) > 1 else ""))

    def summary(self) -> str:
        lines = []
        acc = self.accuracy
        if acc:
            ref = acc["reference"]["metrics"]
            lines.append(f"accuracy on {acc['samples']} held-out samples ({acc['source']}):")
            lines.append(f"  {'reference torch fp32':<42} " + "  ".join(f"{h} top1 {v:.4f}" for h, v in ref.items()))
            for name, ab in acc.get("ablation", {}).items():
                lines.append(f"  {'  ' + name:<42} " + "  ".join(f"{h} top1 {v:.4f}" for h, v in ab.items()))
            for aid, a in acc["artifacts"].items():
                lines.append(f"  {aid + ' (' + a['backend'] + ' ' + a['precision'] + ')':<42} "
                             + "  ".join(f"{h} top1 {v:.4f} (drop {a['drop'][h]:+.4f})" for h, v in a["metrics"].items()))
        else:
            lines.append("accuracy: no labelled evaluation data (parity only)")
        lines.append(f"parity vs the fp32 reference on {self.parity['samples']} held-out samples:")
        for aid, a in self.parity["artifacts"].items():
            if "skipped" in a:
                lines.append(f"  {aid:<42} skipped: {a['skipped']}")
                continue
            worst = min(o["cosine"] for o in a["outputs"].values())
            mabs = max(o["max_abs"] for o in a["outputs"].values())
            lines.append(f"  {aid + ' (' + a['backend'] + ' ' + a['precision'] + ')':<42} min cosine {worst:.7f}  max abs {mabs:.2e}")
        lat = self.latency
        lines.append(f"latency, batch {lat['batch']}, {lat['threads']} threads, each artifact in its own process (median / p90 ms; full matrix: edgemm bench):")
        for r in lat["runs"]:
            lines.append(f"  {r['artifact'] + ' (' + r['backend'] + ' ' + r['precision'] + ')':<42} {r['p50_ms']:.2f} / {r['p90_ms']:.2f}")
        return "\n".join(lines)


def _tolerance(art: Artifact, cfg: VerifyConfig) -> float:
    return {"fp32": cfg.cosine_min, "fp16": cfg.cosine_min_fp16}.get(art.precision, cfg.cosine_min_int8)


def verify(
    bundle: Bundle | str | os.PathLike,
    *,
    evaluation: str | os.PathLike | None = None,
    samples: Samples | None = None,
    config: VerifyConfig | None = None,
    reference_module=None,
    threads: int | None = None,
    write: bool = True,
    latency: bool = True,
) -> VerifyResult:
    """Compare every artifact of ``bundle`` with the fp32 reference; write the reports; raise on a breach."""
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    m = bundle.manifest
    stored = m.get("verify", {})
    cfg = config or VerifyConfig(**{k: v for k, v in stored.items() if k in ("cosine_min", "cosine_min_fp16", "cosine_min_int8", "max_abs", "batch")})
    threads = threads or default_threads()
    options = RunnerOptions(threads=threads)
    spec = bundle.spec
    torch_backend = get_backend("torch")

    if reference_module is not None:
        reference = torch_backend.runner_for_module(reference_module, spec, options)
        ref_label = "the user's model (torch eager fp32)"
    else:
        refs = bundle.select(backend="torch", precision="fp32")
        if not refs:
            raise EdgemmError(f"bundle {bundle.root} has no torch fp32 reference artifact; re-export it")
        reference = torch_backend.create_runner(bundle.root / refs[0].path, spec, options)
        ref_label = f"{refs[0].path} (torch fp32)"

    parity_path = bundle.root / m.get("parity_samples", {}).get("path", "data/parity_samples.npz")
    if not parity_path.is_file():
        raise EdgemmError(f"{parity_path} is missing from the bundle; re-export it")
    parity_feeds = spec.check_feeds(dict(np.load(parity_path)), f"{parity_path.name}: ")

    if samples is None:
        src = evaluation or m.get("evaluation", {}).get("source")
        if src and Path(src).exists():
            with step(f"reading evaluation data {src}"):
                samples = load_samples(src, spec, limit=cfg.eval_limit)
        elif evaluation:
            raise EdgemmError(f"evaluation data {evaluation} not found; pass --eval PATH (an .npz with inputs + labels)")
        elif src:
            logger.warning("warning: evaluation data %s recorded at export is not on this machine; parity only (pass --eval PATH)", src)
    has_labels = samples is not None and bool(samples.labels)

    ref_parity = run_batched(reference, parity_feeds, cfg.batch)
    parity = {"samples": len(next(iter(parity_feeds.values()))), "reference": ref_label,
              "source": m.get("parity_samples", {}).get("source"), "artifacts": {}}
    accuracy = None
    if has_labels:
        with step(f"evaluating the reference on {len(samples)} samples"):
            ref_logits = run_batched(reference, samples.feeds, cfg.batch)
        ref_metrics = top1(ref_logits, samples.labels)
        ablation = {}
        for t in spec.inputs:
            if isinstance(t.preprocessing, (ImagePreprocess, AudioPreprocess)):
                feeds = dict(samples.feeds)
                feeds[t.name] = blank_feeds(spec, t.name, len(samples))
                ablation[f"without {t.name} (blank {t.modality})"] = top1(run_batched(reference, feeds, cfg.batch), samples.labels)
        accuracy = {"split": "eval", "samples": len(samples), "source": samples.source,
                    "reference": {"backend": "torch", "precision": "fp32", "metrics": ref_metrics},
                    "ablation": ablation, "artifacts": {}, "sensitivity": []}


    breaches = []
    for art in bundle.artifacts:
        if art.backend == "torch" and reference_module is None:
            continue  # the torch artifact *is* the reference here
        aid = bundle.artifact_id(art)
        backend = get_backend(art.backend)
        av = backend.availability()
        if not av.available:
            parity["artifacts"][aid] = {"backend": art.backend, "precision": art.precision, "skipped": f"backend unavailable: {av.reason}"}
            continue
        with step(f"verifying {aid} on {art.backend} ({art.precision})"):
            runner = backend.create_runner(bundle.root / art.path, spec, replace(options, precision=art.precision))
            out = run_batched(runner, parity_feeds, cfg.batch)
            per_output = {name: compare(ref_parity[name], out[name]) for name in spec.output_names}
            parity["artifacts"][aid] = {"backend": art.backend, "precision": art.precision, "outputs": per_output}
            floor = _tolerance(art, cfg)
            # INT8 is judged by the task metric and its budget when labels exist; parity alone otherwise.
            enforce = art.precision != "int8" or accuracy is None
            for name, st in per_output.items():
                if enforce and st["cosine"] < floor:
                    breaches.append(f"parity breach: {aid} ({art.backend} {art.precision}) output {name!r} cosine {st['cosine']:.6f} < {floor}")
                if cfg.max_abs is not None and art.precision == "fp32" and st["max_abs"] > cfg.max_abs:
                    breaches.append(f"parity breach: {aid} ({art.backend} {art.precision}) output {name!r} max_abs {st['max_abs']:.3g} > {cfg.max_abs}")
            if accuracy is not None:
                metrics = top1(run_batched(runner, samples.feeds, cfg.batch), samples.labels)
                accuracy["artifacts"][aid] = {
                    "path": art.path, "backend": art.backend, "precision": art.precision, "target": art.target,
                    "method": art.method, "kept_float": art.extra.get("kept_float", []), "metrics": metrics,
                    "drop": {h: accuracy["reference"]["metrics"][h] - v for h, v in metrics.items()},
                    "size_mb": round(art.size_bytes(bundle.root) / 1e6, 4),
                }
                for key in ("quantizer", "calibration_method", "budget", "speed", "tensorrt_qdq_check"):
                    if key in art.extra:
                        accuracy["artifacts"][aid][key] = art.extra[key]
                for entry in art.extra.get("sensitivity", []):
                    accuracy["sensitivity"].append({"target": art.target, **entry})
            runner.close()
    reference.close()
    runs = []
    if latency:
        # Each artifact in its own process (the bench worker): thread pools of torch, ONNX Runtime and OpenVINO
        # spinning in one process on a small CPU distort each other's timings by 10-100x.
        from ..bench.run import BenchConfig, benchmark

        with step("timing every artifact at batch 1, each in its own process"):
            res = benchmark(bundle, BenchConfig(batches=(1,), modes=("model",), seconds=0.5, rounds=1, threads=threads))
        for r in res["runs"]:
            runs.append({"artifact": "reference" if r["baseline"] else r["id"], "backend": r["backend"], "precision": r["precision"],
                         "baseline": r["baseline"], **{k: round(r[k], 4) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")},
                         "iterations": r["iterations"], "peak_rss_mb": r["peak_rss_mb"]})
    result = VerifyResult(parity, accuracy, {"batch": 1, "threads": threads, "mode": "model", "runs": runs}, breaches)
    if write:
        for key, data in result.reports().items():
            bundle.write_report(key, data)
    result.raise_on_breach()  # reports are written first, so a breach is on record
    return result
