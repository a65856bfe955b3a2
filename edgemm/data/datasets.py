"""Labelled sample sets (evaluation / calibration) read into model-level feeds.

An ``.npz`` file (or a directory of them) whose keys are:
- input names: either model-level tensors (``[N, *shape]`` with the input's dtype) or raw
  modality data that the input's pre-processing turns into tensors: ``[N, H, W, 3]`` uint8 frames
  for images, ``[N, samples]`` int16/float waveforms for audio (rate in ``<name>.sample_rate``,
  default the model's rate), an array of strings for text;
- output names: the head's targets (optional: without them only parity is measured), by the head's task
  (``TensorSpec.task``; undeclared: classification for a head with class ``labels``, regression for float
  targets of a head that gives one value per sample, else classification): a classification head takes ``[N]`` class indices
  below its width; a regression head ``[N]`` or ``[N, *head shape]`` float targets, kept float; an
  embedding or raw head takes none (embeddings are compared with the fp32 model's own).
Other keys (metadata such as file names) are read and ignored. Files are read with
:func:`edgemm.safeio.read_npz` (bounded, never unpickled); every malformed array is one SpecError.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BundleError, SpecError
from ..iospec import IOSpec, TensorSpec
from ..safeio import read_npz
from .preprocess import preprocess_input

SAMPLE_FIX = ("write it with numpy.savez: inputs [N, ...], labels [N] class indices or float regression targets "
              "(see edgemm/data/datasets.py)")
# numbers and booleans, and text ("U": raw text inputs and metadata such as file names)
SAMPLE_KINDS = ("f", "i", "u", "b", "U")


@dataclass
class Samples:
    feeds: dict[str, np.ndarray]  # input name -> [N, ...] model-level tensor
    labels: dict[str, np.ndarray]  # output name -> [N] int64 class indices, or float regression targets ([N, ...])
    source: str

    def __len__(self) -> int:
        return len(next(iter(self.feeds.values())))

    @property
    def class_labels(self) -> dict[str, np.ndarray]:
        """The classification heads' labels only (integer class indices): what a cross-entropy loss or an argmax
        accuracy may use; regression targets are float and left out."""
        return {k: v for k, v in self.labels.items() if v.dtype.kind in "iu"}

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
    return preprocess_input(t, arr, base_dir=base_dir, sample_rate=_sample_rate(arrays, t, where), batched=True, where=where)


def _sample_rate(arrays, t: TensorSpec, where: str) -> int | None:
    key = f"{t.name}.sample_rate"
    if key not in arrays:
        return None
    rate = np.asarray(arrays[key])
    if rate.size != 1 or rate.dtype.kind not in "iuf" or not np.isfinite(rate).all() or float(rate.flat[0]) != int(rate.flat[0]) \
            or int(rate.flat[0]) <= 0:
        raise SpecError(f"{where}: {key!r} must be one positive whole number (Hz), got {rate.dtype} {list(rate.shape)} "
                        f"{rate.ravel()[:3].tolist()}; save it as np.int64(rate)")
    return int(rate.flat[0])


def _check_array(arr, name: str, where: str) -> np.ndarray:
    """Arrays from a generator are Python objects turned into arrays; a sample file's are read by safeio already."""
    if not isinstance(arr, np.ndarray):
        arr = np.asarray(arr)
    if arr.dtype.hasobject or arr.dtype.fields is not None or arr.dtype.kind not in SAMPLE_KINDS:
        raise SpecError(f"{where}: {name!r} has dtype {arr.dtype}; sample arrays hold numbers, booleans or text "
                        f"(no objects or records): {SAMPLE_FIX}")
    return arr


def _task(o: TensorSpec, y: np.ndarray) -> str:
    """The head's task for these targets: declared; else classification for a head with class labels; else regression
    where that is unambiguous (float targets, one per sample, for a head that gives one value per sample); else
    classification (a [N, C] float array for a C-wide head may be one-hot rows or C regression targets: declare it)."""
    if o.task is not None:
        return o.task
    if o.labels is not None:
        return "classification"
    one_value = len(o.shape) >= 1 and all(isinstance(d, int) for d in o.shape[1:]) and int(np.prod(o.shape[1:])) == 1
    if y.dtype.kind == "f" and one_value and (y.ndim == 1 or (y.ndim >= 2 and int(np.prod(y.shape[1:])) == 1)):
        return "regression"
    return "classification"


def _labels(arrays, o: TensorSpec, n: int, where: str) -> np.ndarray:
    """One head's targets, by its task: ``[n]`` class indices ``0 .. width-1`` (int64), or float regression targets."""
    y = _check_array(arrays[o.name], o.name, where)
    task = _task(o, y)
    if task in ("embedding", "raw"):
        raise SpecError(f"{where}: key {o.name!r} gives targets for output {o.name!r}, whose task is {task!r} "
                        f"({'measured against the fp32 embeddings' if task == 'embedding' else 'parity only'}); "
                        "drop the key, or declare the output's task as 'classification' or 'regression'")
    if task == "regression":
        if y.dtype.kind not in "iuf":
            raise SpecError(f"{where}: regression targets {o.name!r} have dtype {y.dtype}, expected numbers; {SAMPLE_FIX}")
        if y.ndim == 0 or len(y) != n:
            raise SpecError(f"{where}: labels {o.name!r} have {len(y) if y.ndim else 0} rows, the inputs {n}; one target "
                            f"per sample: {SAMPLE_FIX}")
        return _regression_targets(y, o, where)
    width = o.shape[-1] if len(o.shape) >= 2 and isinstance(o.shape[-1], int) else None
    if y.ndim != 1:
        hint = " (one-hot or score rows: save their argmax)" if y.ndim == 2 else ""
        raise SpecError(f"{where}: labels {o.name!r} have shape {list(y.shape)}, expected [{n}] class indices{hint}, or "
                        f"declare task = 'regression' for float targets of {o.name!r}; {SAMPLE_FIX}")
    if len(y) != n:
        raise SpecError(f"{where}: labels {o.name!r} have {len(y)} rows, the inputs {n}; one label per sample: {SAMPLE_FIX}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise SpecError(f"{where}: labels {o.name!r} are {y.dtype} with fractional or non-finite values, but {o.name!r} "
                            "is a classification head (it has class labels or task 'classification'); class labels are "
                            "whole numbers: declare task = 'regression' for float targets")
    elif y.dtype.kind not in "iu":
        raise SpecError(f"{where}: labels {o.name!r} have dtype {y.dtype}, expected integer class indices; {SAMPLE_FIX}")
    if len(y) and (y.min() < 0 or (width is not None and y.max() >= width)):
        bad = y.min() if y.min() < 0 else y.max()
        allowed = f"0..{width - 1}" if width is not None else "0 or more"
        one = (" (a one-column head is not a classifier: give float targets or declare task = 'regression')"
               if width == 1 else "")
        raise SpecError(f"{where}: labels {o.name!r} hold class {bad:g}, but head {o.name!r} has {width or 'unbounded'} "
                        f"classes ({allowed}){one}; check that the file was made for this model")
    return y.astype(np.int64)


def _regression_targets(y: np.ndarray, o: TensorSpec, where: str) -> np.ndarray:
    """Float targets, never cast to integers: ``[n]`` (one value per sample) or ``[n, *head shape]``."""
    if y.dtype.kind != "f":
        y = y.astype(np.float64)  # integer targets of a declared regression head: their exact values, as floats
    if not np.isfinite(y).all():
        raise SpecError(f"{where}: regression targets {o.name!r} hold inf/NaN values; every target must be a finite number")
    fixed = list(o.shape[1:])
    if fixed and all(isinstance(d, int) for d in fixed):
        values = int(np.prod(fixed))
        ok = list(y.shape[1:]) == fixed or (y.ndim == 1 and values == 1)
        if not ok:
            forms = "[N]" if values == 1 else f"[N, {', '.join(map(str, fixed))}]"
            raise SpecError(f"{where}: regression targets {o.name!r} have shape {list(y.shape)}, but head {o.name!r} gives "
                            f"{fixed} value(s) per sample; save {forms} float targets")
    return y


def samples_from_arrays(arrays, spec: IOSpec, where: str, base_dir: Path, limit: int | None = None) -> Samples:
    """One set of arrays in the sample-file format (an .npz's contents, or what a generator returned)."""
    missing = [n for n in spec.input_names if n not in arrays]
    if missing:
        raise SpecError(f"{where} lacks input(s) {', '.join(missing)}; every sample file needs all inputs: {', '.join(spec.input_names)}")
    arrays = dict(arrays)
    for t in spec.inputs:
        arr = arrays[t.name] = _check_array(arrays[t.name], t.name, where)
        if arr.ndim == 0:
            raise SpecError(f"{where}: input {t.name!r} is a single value, expected [N, ...] samples; {SAMPLE_FIX}")
    n = len(arrays[spec.input_names[0]])
    if n == 0:
        raise SpecError(f"{where}: input {spec.input_names[0]!r} has 0 samples; a sample file needs at least one sample")
    for t in spec.inputs:
        if len(arrays[t.name]) != n:
            raise SpecError(f"{where}: input {t.name!r} has {len(arrays[t.name])} samples, {spec.input_names[0]!r} has {n}; inputs must be aligned")
    known = {*spec.input_names, *spec.output_names}
    for key in arrays:  # a misspelt head would silently switch its accuracy measurement off
        # other keys are metadata (file names, indices): only a near-copy of a head's name is taken for a typo
        near = difflib.get_close_matches(key, spec.output_names, n=1, cutoff=0.85) if key not in known else []
        if near:
            raise SpecError(f"{where}: key {key!r} names no input or output (did you mean {near[0]!r}?); the model's "
                            f"heads are {', '.join(spec.output_names)}: rename the labels")
    labels = {o.name: _labels(arrays, o, n, where) for o in spec.outputs if o.name in arrays}
    if limit is not None:
        arrays = {k: (v[:limit] if v.ndim and len(v) == n else v) for k, v in arrays.items()}
    feeds = {t.name: _to_feed(arrays, t, base_dir, where) for t in spec.inputs}
    if limit is not None:
        labels = {k: v[:limit] for k, v in labels.items()}
    return Samples(feeds, labels, where)


def load_samples(path: str | Path, spec: IOSpec, base_dir: Path | None = None, limit: int | None = None) -> Samples:
    path = Path(path)
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise SpecError(f"sample data {path} not found (expected an .npz file or a directory of them); check the path")
    feeds: dict[str, list] = {n: [] for n in spec.input_names}
    labels: dict[str, list] = {}
    for f in files:
        arrays = read_npz(f, "sample file", allowed_kinds=SAMPLE_KINDS, need_rows=spec.input_names, error=SpecError,
                          fix=SAMPLE_FIX)
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


def read_outputs(path: str | Path, spec: IOSpec, rows: int, what: str, fix: str) -> dict[str, np.ndarray]:
    """Model outputs stored in a bundle (reference outputs of the parity samples): every head, each
    ``[rows, ...]`` with the head's fixed dimensions; a missing head, a wrong width or row count is
    one BundleError naming the file and ``fix``."""
    arrays = read_npz(path, what, names=spec.output_names, need_rows=True, error=BundleError, fix=fix)
    missing = [o.name for o in spec.outputs if o.name not in arrays]
    if missing:
        raise BundleError(f"{what} {path} lacks head(s) {', '.join(missing)} (the model has {', '.join(spec.output_names)}); {fix}")
    for o in spec.outputs:
        got = arrays[o.name]
        want = [rows, *o.shape[1:]]
        if got.ndim != len(o.shape) or any(isinstance(w, int) and g != w for g, w in zip(got.shape, want)):
            raise BundleError(f"{what} {path}: head {o.name!r} has shape {list(got.shape)}, expected {want} "
                              f"({rows} parity samples; named axes are free); {fix}")
    return arrays
