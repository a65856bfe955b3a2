"""Labelled sample sets (evaluation / calibration) read into model-level feeds.

An ``.npz`` file (or a directory of them) whose keys are:
- input names: either model-level tensors (``[N, *shape]`` with the input's dtype) or raw
  modality data that the input's pre-processing turns into tensors: ``[N, H, W, 3]`` uint8 frames
  for images, ``[N, samples]`` int16/float waveforms for audio (rate in ``<name>.sample_rate``,
  default the model's rate), an array of strings for text;
- output names: integer class labels for that head (optional: without them only parity is measured).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SpecError
from ..iospec import IOSpec, TensorSpec
from .preprocess import preprocess_input


@dataclass
class Samples:
    feeds: dict[str, np.ndarray]  # input name -> [N, ...] model-level tensor
    labels: dict[str, np.ndarray]  # output name -> [N] int64
    source: str

    def __len__(self) -> int:
        return len(next(iter(self.feeds.values())))

    def take(self, idx) -> "Samples":
        return Samples({k: v[idx] for k, v in self.feeds.items()}, {k: v[idx] for k, v in self.labels.items()}, self.source)

    def batches(self, batch_size: int):
        for s in range(0, len(self), batch_size):
            yield {k: v[s:s + batch_size] for k, v in self.feeds.items()}


def _is_model_level(arr: np.ndarray, t: TensorSpec) -> bool:
    return arr.dtype == np.dtype(t.dtype) and arr.ndim == len(t.shape) and all(
        isinstance(want, str) or got == want for got, want in zip(arr.shape[1:], t.shape[1:])
    )


def _to_feed(arrays, t: TensorSpec, base_dir: Path, where: str) -> np.ndarray:
    arr = arrays[t.name]
    if _is_model_level(arr, t):
        return arr
    if t.preprocessing is None:
        raise SpecError(
            f"{where}: {t.name!r} has shape {list(arr.shape)} dtype {arr.dtype}, expected [N, ...] like {list(t.shape)} "
            f"{t.dtype} (and the input has no pre-processing to apply to raw data)"
        )
    rate_key = f"{t.name}.sample_rate"
    rate = int(arrays[rate_key]) if rate_key in arrays else None
    return preprocess_input(t, arr, base_dir=base_dir, sample_rate=rate, batched=True, where=where)


def samples_from_arrays(arrays, spec: IOSpec, where: str, base_dir: Path, limit: int | None = None) -> Samples:
    """One set of arrays in the sample-file format (an .npz's contents, or what a generator returned)."""
    missing = [n for n in spec.input_names if n not in arrays]
    if missing:
        raise SpecError(f"{where} lacks input(s) {', '.join(missing)}; every sample file needs all inputs: {', '.join(spec.input_names)}")
    n = len(arrays[spec.input_names[0]])
    for t in spec.inputs:
        if len(arrays[t.name]) != n:
            raise SpecError(f"{where}: input {t.name!r} has {len(arrays[t.name])} samples, {spec.input_names[0]!r} has {n}; inputs must be aligned")
    if limit is not None:
        arrays = {k: (v[:limit] if v.ndim and len(v) == n else v) for k, v in arrays.items()}
    feeds = {t.name: _to_feed(arrays, t, base_dir, where) for t in spec.inputs}
    labels = {o.name: np.asarray(arrays[o.name]).astype(np.int64) for o in spec.outputs if o.name in arrays}
    return Samples(feeds, labels, where)


def load_samples(path: str | Path, spec: IOSpec, base_dir: Path | None = None, limit: int | None = None) -> Samples:
    path = Path(path)
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise SpecError(f"sample data {path} not found (expected an .npz file or a directory of them); check the path")
    feeds: dict[str, list] = {n: [] for n in spec.input_names}
    labels: dict[str, list] = {}
    for f in files:
        try:
            arrays = dict(np.load(f, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise SpecError(f"cannot read {f} as .npz ({exc}); write it with numpy.savez") from exc
        part = samples_from_arrays(arrays, spec, str(f), base_dir or f.parent, limit)
        for k, v in part.feeds.items():
            feeds[k].append(v)
        for k, v in part.labels.items():
            labels.setdefault(k, []).append(v)
    partial = {k: len(v) for k, v in labels.items() if len(v) != len(files)}
    if partial:  # a head labelled in some files only would silently switch its accuracy budget off
        head, have = next(iter(partial.items()))
        raise SpecError(f"{path}: label {head!r} is in {have} of {len(files)} .npz files; label every file "
                        f"(or none) so that {head!r} is evaluated on the whole split")
    out_labels = {k: np.concatenate(v) for k, v in labels.items()}
    return Samples({k: np.concatenate(v) for k, v in feeds.items()}, out_labels, str(path))
