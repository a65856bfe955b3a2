"""IOSpec: the named inputs and outputs of a model, their modality and pre-processing.

The spec travels inside every bundle (``manifest.json`` keys ``inputs`` / ``outputs``) and is
what ``Runtime`` validates feeds against. Shapes are lists whose entries are ints (fixed) or
strings (a named dynamic axis, e.g. ``"batch"``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping, Sequence, Union

import numpy as np

from .errors import SpecError, close_match_hint

MODALITIES = ("image", "audio", "text", "video", "tensor")  # the built-ins; plugins add more (known_modalities())
# What an output is measured by (edgemm.metrics): top-1 on class labels, MAE/RMSE on float targets, cosine and
# recall@k against the fp32 embeddings, or parity only ("raw": detection boxes, feature maps ...).
TASKS = ("classification", "regression", "embedding", "raw")
Dim = Union[int, str]
DEFAULT_AXIS_MAX = 4096  # a named axis without a declared range: what torch.export and the runners accept


@dataclass(frozen=True)
class AxisRange:
    """The sizes a named dynamic axis may take: ``min <= opt <= max`` (``opt``: the size to optimise for, e.g.
    a TensorRT profile's opt shape or the shape an ahead-of-time compile fixes)."""

    min: int = 1
    opt: int = 1
    max: int = DEFAULT_AXIS_MAX

    def __post_init__(self):
        for k in ("min", "opt", "max"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"axis range {k} must be a positive integer, not {v!r}")
        if not self.min <= self.opt <= self.max:
            raise SpecError(f"axis range must satisfy min <= opt <= max, got min={self.min} opt={self.opt} max={self.max}")

    def to_dict(self) -> dict:
        return {"min": self.min, "opt": self.opt, "max": self.max}

    @classmethod
    def from_value(cls, value: Any, where: str) -> "AxisRange":
        """``{min, opt, max}`` (each optional), ``[min, opt, max]`` or one int (a fixed size)."""
        if isinstance(value, AxisRange):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value, value, value)
        if isinstance(value, (list, tuple)) and len(value) == 3:
            return cls(*value)
        if isinstance(value, Mapping):
            unknown = set(value) - {"min", "opt", "max"}
            if unknown:
                raise SpecError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; an axis range has min, opt, max")
            lo = value.get("min", 1)
            opt = value.get("opt", lo)
            return cls(lo, opt, value.get("max", max(DEFAULT_AXIS_MAX, opt)))
        raise SpecError(f"{where}: expected {{min, opt, max}}, [min, opt, max] or an integer, not {value!r}")


# The pre-processing parameters live with their modality (edgemm/modalities/<kind>/); imported here because
# the spec is where users and older code look for them.
from .modalities.audio.params import AudioPreprocess  # noqa: E402
from .modalities.image.params import ImagePreprocess  # noqa: E402
from .modalities.text.params import TextPreprocess  # noqa: E402
from .modalities.video.params import VideoPreprocess  # noqa: E402

Preprocess = Any  # an instance of a modality's params dataclass (ImagePreprocess, AudioPreprocess, ...)


def known_modalities() -> tuple[str, ...]:
    """Every modality name: the built-ins and the plugins' (``edgemm.modalities`` entry points)."""
    from .modalities.registry import all_modalities

    return tuple(all_modalities())


def preprocess_from_dict(modality: str, data: Mapping[str, Any] | None) -> Preprocess | None:
    """Manifest/recipe data -> the modality's params (None: no pre-processing); unknown keys: one SpecError line."""
    from .modalities.registry import get_modality

    if data is None:
        return None
    m = get_modality(modality)
    if m.params is None:
        if data:
            raise SpecError(f"{modality} inputs take no preprocessing, got keys {', '.join(sorted(map(str, data)))}; "
                            "set the input's modality (image, audio, text, video ...) or drop the table")
        return None
    return m.parse(data)


def preprocess_to_dict(pre: Preprocess | None) -> dict | None:
    from .modalities.registry import modality_of_params

    if pre is None:
        return None
    m = modality_of_params(pre)
    if m is None:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(pre).items()}
    return m.to_dict(pre)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str = "float32"
    shape: tuple[Dim, ...] = ()
    modality: str = "tensor"  # inputs only
    preprocessing: Preprocess | None = None  # inputs only
    labels: tuple[str, ...] | None = None  # outputs only (classification heads)
    task: str | None = None  # outputs only: one of TASKS; None: inferred (classification with labels, else from the data)

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise SpecError("every input/output needs a non-empty string 'name'")
        try:
            np.dtype(self.dtype)
        except TypeError as exc:
            raise SpecError(f"{self.name}: unknown dtype {self.dtype!r}; use a numpy name like 'float32' or 'int64'") from exc
        if self.modality not in MODALITIES:
            known = known_modalities()
            if self.modality not in known:
                raise SpecError(
                    f"{self.name}: unknown modality {self.modality!r}{close_match_hint(str(self.modality), known)}; "
                    f"use one of {', '.join(known)} (more come from packages with an edgemm.modalities entry point)"
                )
        if self.preprocessing is not None and isinstance(self.preprocessing, Mapping):
            object.__setattr__(self, "preprocessing", preprocess_from_dict(self.modality, self.preprocessing))
        for d in self.shape:
            if not (isinstance(d, str) or (isinstance(d, int) and d > 0)):
                raise SpecError(f"{self.name}: shape entries must be positive ints or axis names, got {d!r}")
        if self.task is not None:
            if self.task not in TASKS:
                raise SpecError(f"{self.name}: unknown task {self.task!r}{close_match_hint(str(self.task), TASKS)}; "
                                f"use one of {', '.join(TASKS)}")
            if self.labels is not None and self.task != "classification":
                raise SpecError(f"{self.name}: 'labels' name the classes of a classification head, but task is {self.task!r}; "
                                "drop the labels or set task = 'classification'")

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete_shape(self, batch: int = 1) -> tuple[int, ...]:
        """Shape with every named axis set to ``batch`` (the only dynamic axis we bind by default)."""
        return tuple(d if isinstance(d, int) else batch for d in self.shape)

    @cached_property
    def _check_consts(self) -> tuple[np.dtype, int, tuple[tuple[int, int], ...]]:
        """What ``check`` compares on every call: the numpy dtype, the rank and the fixed axes (index, size)."""
        return np.dtype(self.dtype), len(self.shape), tuple((i, d) for i, d in enumerate(self.shape) if isinstance(d, int))

    def check(self, array: Any, where: str = "") -> np.ndarray:
        """Return ``array`` as an ndarray if it matches this spec, else raise a one-line SpecError."""
        if not isinstance(array, np.ndarray):
            raise SpecError(f"{where}input {self.name!r} must be a numpy array, got {type(array).__name__}")
        dtype, rank, fixed = self._check_consts
        if array.dtype != dtype:
            raise SpecError(
                f"{where}input {self.name!r} has dtype {array.dtype}, expected {self.dtype}; "
                f"convert it with .astype(np.{self.dtype})"
            )
        shape = array.shape
        if len(shape) != rank or any(shape[i] != want for i, want in fixed):
            raise SpecError(
                f"{where}input {self.name!r} has shape {list(array.shape)}, expected {list(self.shape)} "
                f"(named axes are free)"
            )
        return array

    def to_dict(self, kind: str) -> dict:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if kind == "input":
            d["modality"] = self.modality
            d["preprocessing"] = preprocess_to_dict(self.preprocessing)
        else:
            d["labels"] = list(self.labels) if self.labels is not None else None
            if self.task is not None:  # written only when declared: an inferred task is the data's, not the model's
                d["task"] = self.task
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], kind: str) -> "TensorSpec":
        known = {"name", "dtype", "shape"} | ({"modality", "preprocessing"} if kind == "input" else {"labels", "task"})
        for key in data:
            if key not in known:
                raise SpecError(
                    f"unknown {kind} key {key!r}{close_match_hint(key, known)}; known keys: {', '.join(sorted(known))}"
                )
        if "name" not in data:
            raise SpecError(f"an {kind} entry has no 'name'")
        modality = data.get("modality", "tensor")
        labels = data.get("labels")
        return cls(
            name=data["name"],
            dtype=data.get("dtype", "float32"),
            shape=tuple(data.get("shape", ())),
            modality=modality,
            preprocessing=preprocess_from_dict(modality, data.get("preprocessing")),
            labels=tuple(str(x) for x in labels) if labels is not None else None,
            task=data.get("task") if kind == "output" else None,
        )


@dataclass(frozen=True)
class IOSpec:
    inputs: tuple[TensorSpec, ...] = field(default_factory=tuple)
    outputs: tuple[TensorSpec, ...] = field(default_factory=tuple)
    # named dynamic axis -> the sizes it may take; an axis not listed takes 1..DEFAULT_AXIS_MAX (opt 1)
    axes: Mapping[str, AxisRange] = field(default_factory=dict, hash=False, compare=True)

    def __post_init__(self):
        names = [t.name for t in self.inputs] + [t.name for t in self.outputs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SpecError(f"input/output names must be unique, repeated: {', '.join(sorted(dup))}")
        if not self.inputs:
            raise SpecError("the IOSpec has no inputs; name at least one")
        axes = {k: AxisRange.from_value(v, f"axis {k!r}") for k, v in dict(self.axes or {}).items()}
        named = {d for t in self.inputs + self.outputs for d in t.shape if isinstance(d, str)}
        stray = sorted(set(axes) - named)
        if stray:
            raise SpecError(f"axis range(s) for {', '.join(map(repr, stray))} name no dynamic axis of any input or output; "
                            f"named axes: {', '.join(sorted(named)) or 'none'}")
        object.__setattr__(self, "axes", axes)

    @property
    def axis_names(self) -> list[str]:
        """Every named dynamic axis of the inputs, in order of first appearance."""
        return list(dict.fromkeys(d for t in self.inputs for d in t.shape if isinstance(d, str)))

    def axis_range(self, name: str) -> AxisRange:
        """The declared range of a named axis, else 1..DEFAULT_AXIS_MAX with opt 1."""
        return self.axes.get(name) or AxisRange()

    def shape_range(self, input_name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shapes of an input from its axes' ranges (a TensorRT profile's three shapes)."""
        t = self.input(input_name)
        pick = lambda k: tuple(d if isinstance(d, int) else getattr(self.axis_range(d), k) for d in t.shape)  # noqa: E731
        return pick("min"), pick("opt"), pick("max")

    def with_axes(self, axes: Mapping[str, Any]) -> "IOSpec":
        """This spec with ``axes`` ranges merged over the declared ones."""
        return dataclasses.replace(self, axes={**self.axes, **dict(axes)})

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def input(self, name: str) -> TensorSpec:
        for t in self.inputs:
            if t.name == name:
                return t
        raise SpecError(f"no input named {name!r}{close_match_hint(name, self.input_names)}; inputs: {', '.join(self.input_names)}")

    def output(self, name: str) -> TensorSpec:
        for t in self.outputs:
            if t.name == name:
                return t
        raise SpecError(f"no output named {name!r}{close_match_hint(name, self.output_names)}; outputs: {', '.join(self.output_names)}")

    @cached_property
    def _feed_consts(self) -> tuple[frozenset, tuple[tuple[str, int, str], ...], dict[str, tuple[int, int]]]:
        """What ``check_feeds`` needs on every call: the input names, every named axis of an input as
        (input, axis index, axis name), and each axis name's (min, max)."""
        named = tuple((t.name, i, d) for t in self.inputs for i, d in enumerate(t.shape) if isinstance(d, str))
        ranges = {d: (self.axis_range(d).min, self.axis_range(d).max) for _, _, d in named}
        return frozenset(t.name for t in self.inputs), named, ranges

    def check_feeds(self, feeds: Mapping[str, Any], where: str = "") -> dict[str, np.ndarray]:
        """Validate a feed dict (names, dtypes, shapes, one batch size); return it in input order."""
        if not isinstance(feeds, Mapping):
            raise SpecError(f"{where}feeds must be a dict of input name -> numpy array, got {type(feeds).__name__}")
        names, named, ranges = self._feed_consts
        if len(feeds) == len(names) and all(n in names for n in feeds):  # the usual call: exactly the inputs
            out = {t.name: t.check(feeds[t.name], where) for t in self.inputs}
            sizes: dict[str, int] = {}
            for tname, axis, axis_name in named:
                if sizes.setdefault(axis_name, out[tname].shape[axis]) != out[tname].shape[axis]:
                    break  # the full check below names both inputs
            else:
                if all(ranges[a][0] <= n <= ranges[a][1] for a, n in sizes.items()):
                    return out
        for name in feeds:
            if name not in self.input_names:
                raise SpecError(
                    f"{where}unknown input {name!r}{close_match_hint(name, self.input_names)}; "
                    f"the model takes: {', '.join(self.input_names)}"
                )
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise SpecError(f"{where}missing input(s) {', '.join(map(repr, missing))}; the model takes: {', '.join(self.input_names)}")
        out = {t.name: t.check(feeds[t.name], where) for t in self.inputs}
        bound: dict[str, tuple[str, int]] = {}
        for t in self.inputs:
            for axis, axis_name in t.dynamic_axes.items():
                size = out[t.name].shape[axis]
                if axis_name in bound and bound[axis_name][1] != size:
                    other, other_size = bound[axis_name]
                    raise SpecError(
                        f"{where}axis {axis_name!r} is {size} in input {t.name!r} but {other_size} in {other!r}; "
                        "all inputs must share it"
                    )
                bound.setdefault(axis_name, (t.name, size))
        for axis_name, (tname, size) in bound.items():
            r = self.axis_range(axis_name)
            if not r.min <= size <= r.max:
                raise SpecError(
                    f"{where}axis {axis_name!r} of input {tname!r} is {size}; this model takes {r.min}..{r.max}"
                    + (" (an empty batch has nothing to run: pass at least one sample)" if size == 0 else "")
                )
        return out

    def to_manifest(self) -> dict:
        out = {"inputs": [t.to_dict("input") for t in self.inputs], "outputs": [t.to_dict("output") for t in self.outputs]}
        if self.axes:
            out["axes"] = {k: v.to_dict() for k, v in self.axes.items()}
        return out

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any]) -> "IOSpec":
        try:
            inputs = tuple(TensorSpec.from_dict(d, "input") for d in data["inputs"])
            outputs = tuple(TensorSpec.from_dict(d, "output") for d in data.get("outputs", []))
        except (KeyError, TypeError) as exc:
            raise SpecError(f"malformed inputs/outputs ({exc}); each entry must be a table with name, dtype, shape") from exc
        axes = data.get("axes") or {}
        if not isinstance(axes, Mapping):
            raise SpecError(f"'axes' must map axis names to {{min, opt, max}}, not {type(axes).__name__}")
        return cls(inputs=inputs, outputs=outputs, axes=dict(axes))

    def valid_feeds(self, batch: int = 1, seed: int = 0, base_dir: Any = None) -> dict[str, np.ndarray]:
        """Valid model-level feeds made by each input's modality (images, waveforms, token ids of the input's own
        tokenizer with prefix attention masks); an input another input's pre-processing fills (an attention mask)
        comes from that one. ``base_dir``: the folder the tokenizer's path is relative to (the bundle's root)."""
        from pathlib import Path

        from .modalities.registry import get_modality

        feeds: dict[str, np.ndarray] = {}
        for t in self.inputs:
            if t.name in feeds:
                continue
            m = get_modality(t.modality)
            made = m.generate(t, batch, seed, Path(base_dir) if base_dir is not None else None) if (
                t.preprocessing is not None or m.params is None) else get_modality("tensor").generate(t, batch, seed)
            feeds.update({k: v for k, v in made.items() if k in self.input_names})
        for t in self.inputs:  # filled by another input's pre-processing, or given a dtype of its own
            if t.name not in feeds:
                feeds.update(get_modality("tensor").generate(t, batch, seed))
            feeds[t.name] = feeds[t.name].astype(t.dtype, copy=False)
        return {t.name: feeds[t.name] for t in self.inputs}

    def example_feeds(self, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Random feeds of the right names/dtypes/shapes (shape checks, synthetic benchmarks)."""
        rng = np.random.default_rng(seed)
        feeds = {}
        for t in self.inputs:
            shape = t.concrete_shape(batch)
            if np.issubdtype(np.dtype(t.dtype), np.integer):
                feeds[t.name] = rng.integers(0, 2, size=shape).astype(t.dtype)
            else:
                feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
        return feeds
