"""Runtime: a bundle's artifact loaded on one backend, with the bundle's own pre-processing."""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from ..backends.base import RunnerOptions
from ..backends.registry import get_backend
from ..bundle import Artifact, Bundle
from ..cpu import saturation_warning
from ..data.preprocess import preprocess_input
from ..log import logger
from ..errors import BackendUnavailable, BundleError, SpecError
from ..iospec import AudioPreprocess, TensorSpec



class Runtime:
    """``Runtime.run(feeds) -> {output: array}``; ``Runtime.preprocess(**raw) -> feeds``."""

    def __init__(self, bundle: Bundle, artifact: Artifact, threads: int | None = None, runner=None):
        """``runner``: an already created Runner for ``artifact`` (e.g. the live original module)."""
        self.bundle = bundle
        self.artifact = artifact
        self.spec = bundle.spec
        self.backend = artifact.backend
        self.precision = artifact.precision
        if artifact.precision == "int8":
            warning = saturation_warning(artifact.extra.get("cpu", {}).get("reduce_range"))
            if warning:
                logger.warning("warning: %s: %s", artifact.path, warning)
        self._runner = runner or get_backend(artifact.backend).create_runner(
            bundle.file(artifact.path, "artifact path"), self.spec, RunnerOptions(threads=threads, precision=artifact.precision))

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.spec.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.spec.outputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Model-level tensors in (validated against ``inputs``), raw outputs out, in graph order."""
        if self._runner is None:
            raise SpecError("this Runtime is closed; load the bundle again")
        return self._runner.infer(feeds)

    def preprocess(self, sample_rate: int | None = None, **raw: Any) -> dict[str, np.ndarray]:
        """Raw modality data -> feeds. Images: HxWx3 uint8 RGB; audio: a mono waveform (or
        ``(waveform, sample_rate)``; ``sample_rate=`` applies to every audio input, default the
        model's rate); text: a string. Inputs without pre-processing pass through as tensors."""
        feeds = {}
        for name, value in raw.items():
            t = self.spec.input(name)
            if t.preprocessing is None:
                feeds[name] = np.asarray(value)
                continue
            rate = sample_rate
            if isinstance(t.preprocessing, AudioPreprocess) and isinstance(value, tuple):
                value, rate = value
            feeds[name] = preprocess_input(t, value, base_dir=self.bundle.root, sample_rate=rate)
        return feeds

    def labels(self, outputs: Mapping[str, np.ndarray]) -> dict[str, list[tuple[str, float]]]:
        """Top label and softmax score per sample for every classification head."""
        out = {}
        for t in self.spec.outputs:
            if t.labels is None or t.name not in outputs:
                continue
            logits = np.asarray(outputs[t.name], dtype=np.float64)
            p = np.exp(logits - logits.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            idx = p.argmax(-1)
            out[t.name] = [(t.labels[i], float(p[k, i])) for k, i in enumerate(idx)]
        return out

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Runtime({self.bundle.root}, backend={self.backend!r}, precision={self.precision!r}, artifact={self.artifact.path!r})"


def _rank(bundle: Bundle, candidates: list[Artifact]) -> list[Artifact]:
    """Fastest first by the bundle's latency report (batch 1), else by backend preference."""
    lat = bundle.report("latency") or {}
    p50 = {r["artifact"]: r["p50_ms"] for r in lat.get("runs", [])}

    def key(a: Artifact):
        measured = p50.get(bundle.artifact_id(a))
        pref = get_backend(a.backend).load_priority  # without a latency report: what each backend declares
        # An int8 artifact measured slower than its fp32 at export (manifest speed.slower) never comes first.
        slower = bool((a.extra.get("speed") or {}).get("slower"))
        return (slower, measured is None, measured or 0.0, pref, ("fp32", "fp16", "int8").index(a.precision) if a.precision in ("fp32", "fp16", "int8") else 9)

    return sorted(candidates, key=key)


def load(bundle_dir: str | os.PathLike | Bundle, backend: str | None = None, precision: str | None = None,
         graph: str | None = None, threads: int | None = None, trust_code: bool = False) -> Runtime:
    """Open a bundle and pick an artifact (the fastest available one unless ``backend``/``precision`` say).

    ``trust_code=True`` allows the torch reference artifact (its .pt2 is unpickled: see edgemm.trust)."""
    from ..trust import allow_code

    with allow_code(trust_code):
        return _load(bundle_dir, backend, precision, graph, threads)


def _load(bundle_dir, backend, precision, graph, threads) -> Runtime:
    bundle = bundle_dir if isinstance(bundle_dir, Bundle) else Bundle.open(bundle_dir)
    candidates = bundle.select(backend=backend, precision=precision, graph=graph)
    if not candidates:
        have = ", ".join(sorted({f"{a.backend}/{a.precision}" for a in bundle.artifacts}))
        want = "/".join(x for x in (backend, precision) if x)
        raise BundleError(f"bundle {bundle.root} has no {want} artifact; it has: {have}")
    reasons = []
    for art in _rank(bundle, candidates):
        backend = get_backend(art.backend)
        if not backend.runs(art.format):
            reasons.append(f"{art.path} is a {art.format} file {art.backend} builds from (edgemm compile --target {art.backend})")
            continue
        av = backend.availability()
        if av.available:
            return Runtime(bundle, art, threads=threads)
        reasons.append(f"{art.backend}: {av.reason}" + (f" (install: {av.install})" if av.install else ""))
    raise BackendUnavailable(f"no backend on this machine can run {bundle.root}: " + "; ".join(reasons))
