"""The modality contract: what one kind of raw input (a camera frame, a waveform, a string, a clip) needs.

A modality is a ``Modality`` subclass (built-in ones live in ``edgemm/modalities/<kind>/``, third-party ones
come from the ``edgemm.modalities`` entry-point group). It declares:

- ``params``: the frozen dataclass of its pre-processing parameters (the IOSpec's ``preprocessing``), checked
  in ``__post_init__`` with one ``SpecError`` line; ``parse`` / ``to_dict`` turn it into manifest data;
- ``preprocess(t, raw, ctx)``: the numpy reference pre-processing of raw data for input ``t`` -> model-level
  feeds (usually ``{t.name: array}``; a tokenizer also fills the attention-mask input it names);
- ``kernel(pre)``: an optional faster implementation (a C kernel) with the reference's numbers;
- ``generate(t, batch, seed)``: valid model-level feeds (token ids inside the vocabulary with prefix masks,
  waveforms, images) for parity and tracing, never random {0, 1} integers;
- ``stream_adapter(t, ...)``: how ``edgemm.Stream`` turns the items of a source into this input's tensor
  (``None``: the stream cannot feed it live); ``schemes`` / ``open_source``: source URIs it opens itself;
- ``assets(pre)``: files its parameters name (a tokenizer), copied into a bundle beside the manifest.

Everything here is duck-typed on the input spec (``t.name``, ``t.dtype``, ``t.shape``, ``t.preprocessing``):
the modalities sit below ``edgemm.iospec``, which parses a manifest's pre-processing through them.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from ..errors import SpecError, close_match_hint

OPTIONAL = {"optional": True}  # dataclass field metadata: written to a manifest only when not the default


@dataclass
class Context:
    """What a pre-processing call knows beyond the raw data: the folder relative asset paths start from, whether
    ``raw`` is a batch, and the call's options (``sample_rate``, ``color``, ...), each checked by the modality."""

    base_dir: Path = Path(".")
    batched: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    @property
    def prefix(self) -> str:
        return f"{self.where}: " if self.where else ""


class StreamAdapter(ABC):
    """Turns a source's item (a ``Frame``, a sensor window ...) into one input's tensor, frame after frame.

    ``out_shape``: the tensor it writes (batch 1); ``__call__(item, out)`` fills ``out`` (or returns a new array);
    ``ready``: False while a clip adapter has not buffered its first clip yet (its frames yield no result)."""

    out_shape: tuple[int, ...] = ()
    ready: bool = True

    @abstractmethod
    def __call__(self, item, out: np.ndarray | None = None) -> np.ndarray:
        """``item`` as this input's tensor (written into ``out`` when given)."""


class Modality(ABC):
    """One kind of raw input. Subclasses set ``name`` and ``params`` and implement ``preprocess`` and ``generate``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[type | None] = None  # the frozen dataclass of the pre-processing parameters (None: takes none)
    options: ClassVar[tuple[str, ...]] = ()  # keyword options ``Runtime.preprocess`` passes through (sample_rate, color)
    schemes: ClassVar[tuple[str, ...]] = ()  # source URI schemes ``open_source`` opens (``lidar`` for ``lidar:PATH``)
    paced: ClassVar[bool] = False  # True: a stream's frames come from this input's source (it sets the pace)

    # ------------------------------------------------------------------ parameters
    def parse(self, data: Mapping[str, Any] | None):
        """Manifest/recipe data -> the params dataclass (None stays None); unknown keys are one SpecError line."""
        if data is None or self.params is None:
            return None
        if isinstance(data, self.params):
            return data
        if not isinstance(data, Mapping):
            raise SpecError(f"{self.name} preprocessing must be a table of keys, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(self.params)}
        for key in data:
            if key not in known:
                raise SpecError(f"unknown {self.name} preprocessing key {key!r}{close_match_hint(str(key), known)}; "
                                f"known keys: {', '.join(sorted(known))}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return self.params(**kwargs)
        except TypeError as exc:  # a value of the wrong kind the dataclass cannot even compare
            raise SpecError(f"{self.name} preprocessing: {exc}") from exc

    def to_dict(self, pre) -> dict | None:
        """The params as manifest data; fields marked ``OPTIONAL`` are left out while they hold their default
        (a bundle written before they existed reads back the same)."""
        if pre is None:
            return None
        out = {}
        for f in dataclasses.fields(pre):
            v = getattr(pre, f.name)
            if f.metadata.get("optional") and v == f.default:
                continue
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def assets(self, pre) -> dict[str, str]:
        """``{params key: relative path}`` of the files the params name (shipped inside a bundle)."""
        return {}

    # ------------------------------------------------------------------ data
    @abstractmethod
    def preprocess(self, t, raw, ctx: Context) -> dict[str, np.ndarray]:
        """Raw data for input ``t`` -> model-level feeds with a leading batch axis (the numpy reference, or the
        kernel where it computes the same numbers)."""

    def kernel(self, pre):
        """A faster implementation of ``preprocess``'s arithmetic for these params (None: the reference only)."""
        return None

    @abstractmethod
    def generate(self, t, batch: int, seed: int, base_dir: Path | None = None) -> dict[str, np.ndarray]:
        """``batch`` valid model-level feeds for input ``t`` (and the inputs it fills, e.g. an attention mask)."""

    def raw_example(self, t, seed: int = 0, base_dir: Path | None = None):
        """One raw sample ``preprocess`` takes (tests and synthetic benchmarks); None when there is none."""
        return None

    # ------------------------------------------------------------------ streams
    def stream_adapter(self, t, *, base_dir: Path | None = None) -> StreamAdapter | None:
        return None

    def open_source(self, uri: str, *, clock=None, pace: bool = False, t=None):
        """A ``Source`` for ``uri`` (one of ``schemes``); the default opens nothing."""
        raise SpecError(f"the {self.name} modality opens no sources; its stream takes a video source")


def unknown_options(modality: Modality, ctx: Context) -> None:
    """Options the modality does not take are a mistake the caller should hear about."""
    extra = [k for k, v in ctx.options.items() if v is not None and k not in modality.options]
    if extra:
        raise SpecError(f"{ctx.prefix}option(s) {', '.join(map(repr, extra))} do not apply to {modality.name} inputs; "
                        f"{modality.name} takes {', '.join(modality.options) or 'no options'}")
