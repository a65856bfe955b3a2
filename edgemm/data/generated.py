"""The fine-tuning split: a sample file, or samples that the recipe's own code renders.

```toml
[data]
training = "train.npz"                  # a sample file (or a folder of them), like calibration
```
or
```toml
[data.training]
generator = "edgemm.zoo.avmnist:training_pairs"           # "package.module:callable", trusted like [model] factory
path = "../calibration_data/avmnist/train-material.npz"   # optional: resolved like every recipe path, passed as path=
renders = 4                                               # any other key is passed as a keyword argument
```
The callable returns a mapping of arrays in the sample-file format (``edgemm.data.datasets``: input
names -> raw or model-level data, output names -> labels). It suits training data that is rendered
from raw material (many renders of few recordings), which would be too large to ship rendered. Only
fine-tuning reads it (pruning, QAT): calibration and evaluation stay files, and a bundle never names
code to run.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..errors import RecipeError, SpecError
from ..iospec import IOSpec
from .calibration import refuse_nonfinite
from .datasets import Samples, load_samples, samples_from_arrays

GENERATOR = "generator"
PATH = "path"
FIX_DATA = "clean the training data (fine-tuning on it would ship a broken model)"


def check_training(value, source: str = "recipe") -> None:
    """A [data] training value is a path string or a table with ``generator = "module:callable"``."""
    if value is None or isinstance(value, (str, os.PathLike)):
        return
    if not isinstance(value, Mapping):
        raise RecipeError(f"{source}: [data] training must be a path (\"train.npz\") or a table with generator = \"module:callable\"")
    ref = value.get(GENERATOR)
    if not isinstance(ref, str) or ":" not in ref:
        raise RecipeError(f"{source}: [data.training] needs generator = \"package.module:callable\" (the code that renders the "
                          f"training samples), got {ref!r}; or write [data] training = \"train.npz\"")
    if PATH in value and not isinstance(value[PATH], str):
        raise RecipeError(f"{source}: [data.training] path must be a string, not {value[PATH]!r}")


def resolve_training(value, resolve: Callable[[str], Path]):
    """The training source with its path(s) made absolute by ``resolve`` (the recipe's base folder)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        out = dict(value)
        if PATH in out:
            out[PATH] = str(resolve(out[PATH]))
        return out
    return str(resolve(value))


def describe(source) -> str:
    """One line naming a training source: its path, or ``module:callable(options)``."""
    if isinstance(source, Mapping):
        opts = ", ".join(f"{k}={v!r}" for k, v in source.items() if k != GENERATOR)
        return f"{source[GENERATOR]}({opts})"
    return str(source)


def read_training(source, spec: IOSpec) -> Samples:
    """The fine-tuning samples of ``source`` (a sample file/folder, or a generator table), refused in one line
    if they hold NaN/inf (fine-tuning on them would ship a broken model; labels are checked by the reader)."""
    if not isinstance(source, Mapping):
        samples = load_samples(source, spec)
        refuse_nonfinite(samples.feeds, f"training data {source}", FIX_DATA, Path(source))
        return samples
    from ..usercode import import_callable

    check_training(source)
    ref = source[GENERATOR]
    kwargs = {k: v for k, v in source.items() if k != GENERATOR}
    if PATH in kwargs and not Path(kwargs[PATH]).exists():
        raise SpecError(f"[data.training] path {kwargs[PATH]} not found (the material {ref} renders from); fix the path")
    fn = import_callable(ref, "training generator")
    arrays = fn(**kwargs)  # its exceptions are the user's: UserCodeError naming it (edgemm.usercode)
    where = f"the training generator {ref}"
    if not isinstance(arrays, Mapping):
        raise SpecError(f"{where} returned a {type(arrays).__name__}; it must return a mapping "
                        f"of arrays like an .npz sample file (input names, label names)")
    try:
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
    except Exception as exc:  # noqa: BLE001 - ragged lists and odd objects the user's code returned
        raise SpecError(f"{where} returned values that are not arrays ({type(exc).__name__}: {exc}); return numpy arrays") from exc
    odd = [k for k, v in arrays.items() if v.dtype.kind in "OV"]
    if odd:
        raise SpecError(f"{where} returned {', '.join(map(repr, odd))} as Python objects; return numeric arrays")
    fix = "fix the generator (training must not see them)"
    refuse_nonfinite(arrays, f"the output of {where}", fix, kind="array")
    samples = samples_from_arrays(arrays, spec, describe(source), Path(kwargs.get(PATH, ".")).parent)
    refuse_nonfinite(samples.feeds, where, fix)
    return samples


class TrainingSplit:
    """One export's fine-tuning split (``source``: a path, a generator table or None), read on first use and
    shared by the stages that fine-tune (pruning, QAT): a rendered split is rendered once."""

    def __init__(self, source, spec: IOSpec):
        self.source, self.spec, self._samples = source, spec, None

    def read(self) -> Samples | None:
        if self.source is None:
            return None
        if self._samples is None:
            from ..log import step

            with step(f"reading the training split {describe(self.source)}"):
                self._samples = read_training(self.source, self.spec)
        return self._samples
