"""CalibrationSource: aligned feeds for every input, validated against the IOSpec.

Sources: an ``.npz`` file or a directory of them (a set per file or a sample per file; keys are
input names; raw modality data is pre-processed with the input's own pre-processing, see
``edgemm.data.datasets``), a Python iterable of ``{name: array}`` feeds (API), or
``"synthetic"`` (random feeds: speed only, no accuracy claim; warned).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from ..errors import SpecError, on_command_line, setting, switch
from ..iospec import IOSpec
from ..log import logger
from .datasets import load_samples

MIN_SAMPLES = 100  # fewer is a warning: ranges from a handful of samples clip real inputs


@dataclass
class CalibrationSource:
    feeds: dict[str, np.ndarray]  # input name -> [N, ...], validated
    source: str
    sha256: str | None
    synthetic: bool = False

    def __len__(self) -> int:
        return len(next(iter(self.feeds.values())))

    def iter_batches(self, batch: int = 1) -> Iterator[dict[str, np.ndarray]]:
        for s in range(0, len(self), batch):
            yield {k: v[s:s + batch] for k, v in self.feeds.items()}

    def coverage(self) -> dict[str, dict]:
        """Per-input statistics for the report: what ranges the calibration actually saw."""
        out = {}
        for name, a in self.feeds.items():
            x = a.astype(np.float64).ravel()
            p = np.percentile(x, [0.1, 1, 50, 99, 99.9])
            out[name] = {"dtype": str(a.dtype), "shape": list(a.shape), "min": float(x.min()), "max": float(x.max()),
                         "mean": float(x.mean()), "std": float(x.std()),
                         "p0.1": float(p[0]), "p1": float(p[1]), "p50": float(p[2]), "p99": float(p[3]), "p99.9": float(p[4])}
        return out

    def manifest_entry(self, method: str) -> dict:
        return {"source": self.source, "sha256": self.sha256, "samples": len(self), "method": method,
                "synthetic": self.synthetic, "coverage": self.coverage()}


def nonfinite(arrays: Mapping[str, np.ndarray]) -> tuple[str, int, int] | None:
    """The first float array of ``arrays`` with NaN/inf: ``(key, count, first sample index)``; None if all are finite."""
    for key, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind in "fc":
            bad = ~np.isfinite(a)
            if bad.any():
                first = int(np.argmax(bad.reshape(len(a), -1).any(axis=1))) if a.ndim else 0
                return key, int(bad.sum()), first
    return None


def refuse_nonfinite(arrays: Mapping[str, np.ndarray], where: str, fix: str, path: Path | None = None,
                     kind: str = "input") -> None:
    """One SpecError line when a float array holds NaN/inf, naming ``where``, the input and the first sample
    (and, for a folder of .npz files, the file) before any calibration or training sees the data."""
    found = nonfinite(arrays)
    if found is None:
        return
    key, count, first = found
    if path is not None and path.is_dir():  # name the file, not only the folder (read again only on this failure)
        for f in sorted(path.glob("*.npz")):
            with np.load(f, allow_pickle=False) as z:
                in_file = nonfinite({key: z[key]}) if key in z.files else None
            if in_file is not None:
                where, count, first = f"{where} (file {f.name})", in_file[1], in_file[2]
                break
    raise SpecError(f"{where}: {kind} {key!r} has {count} NaN/inf value(s) (first in sample {first}); {fix}")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _from_iterable(items: Iterable[Mapping[str, np.ndarray]], spec: IOSpec) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {n: [] for n in spec.input_names}
    for i, feeds in enumerate(items):
        checked = spec.check_feeds({k: np.asarray(v) for k, v in dict(feeds).items()}, f"calibration sample {i}: ")
        for k, v in checked.items():
            parts[k].append(v)
    if not parts[spec.input_names[0]]:
        raise SpecError("the calibration iterable yielded no samples; give it at least 100 feeds")
    return {k: np.concatenate(v) for k, v in parts.items()}


def calibration_source(data, spec: IOSpec, *, min_samples: int = MIN_SAMPLES, limit: int | None = None) -> CalibrationSource:
    """Resolve ``data`` (path, iterable of feeds, or "synthetic") into a validated CalibrationSource."""
    if data is None:
        synthetic = "synthetic" if on_command_line() else '"synthetic"'
        raise SpecError(f"{switch('int8')} needs calibration data: pass {setting('calibration', 'DIR_OR_NPZ')} (samples with "
                        f"every input), or {setting('calibration', synthetic)} for a speed-only model with no accuracy claim")
    if isinstance(data, str) and data == "synthetic":
        logger.warning("warning: calibrating on synthetic random feeds: the INT8 model is for speed measurements only; "
                       "its accuracy is not representative")
        n = limit or MIN_SAMPLES
        rng_feeds = spec.example_feeds(batch=n, seed=123)
        return CalibrationSource(rng_feeds, "synthetic", None, synthetic=True)
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        samples = load_samples(path, spec, limit=limit)
        feeds = spec.check_feeds(samples.feeds, f"calibration data {path}: ")
        src = CalibrationSource(feeds, str(path), _digest(path))
    else:
        feeds = _from_iterable(data, spec)
        if limit:
            feeds = {k: v[:limit] for k, v in feeds.items()}
        src = CalibrationSource(feeds, "python iterable", None)
    where = f"calibration data {src.source}" if src.source != "python iterable" else "the calibration iterable"
    refuse_nonfinite(src.feeds, where, "clean the calibration data (its ranges would be meaningless)",
                     Path(src.source) if isinstance(data, (str, os.PathLike)) else None)
    if len(src) < min_samples:
        logger.warning("warning: only %d calibration samples (counted over all inputs); %d or more give stable ranges",
                       len(src), min_samples)
    return src
