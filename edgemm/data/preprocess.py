"""Raw modality data -> model-level feeds, through each input's modality (``edgemm.modalities``).

Images and log-mel audio go to the compiled kernels of ``edgemm.frontends.native`` when the extension is built
(equal to the numpy references within float tolerance), everything else to the modality's numpy reference."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import SpecError, close_match_hint
from ..iospec import TensorSpec
from ..modalities.base import Context
from ..modalities.registry import get_modality


def preprocess_feeds(t: TensorSpec, raw, *, base_dir: Path, batched: bool = False, where: str = "",
                     **options: Any) -> dict[str, np.ndarray]:
    """Raw data for input ``t`` -> ``{input name: model-level tensor}`` with a leading batch axis (a text input
    also fills the attention-mask input its pre-processing names). ``options``: ``sample_rate``, ``color`` ..."""
    prefix = f"{where}: " if where else ""
    if t.preprocessing is None:
        raise SpecError(f"{prefix}input {t.name!r} ({t.modality}) has no pre-processing; pass the model-level tensor instead")
    m = get_modality(t.modality)
    ctx = Context(base_dir=Path(base_dir), batched=batched, options={k: v for k, v in options.items() if v is not None}, where=where)
    out = m.preprocess(t, raw, ctx)
    if t.name not in out:
        raise SpecError(f"{prefix}the {t.modality} modality made no tensor for input {t.name!r}; fix or uninstall the plugin that provides it")
    res = {}
    for name, arr in out.items():
        arr = np.asarray(arr)
        if name == t.name:
            arr = arr.astype(t.dtype, copy=False)
        # New axes (x[None]) get stride 0; some kernels (PyTorch's conv) take a slow path on such views.
        res[name] = arr.copy() if 0 in arr.strides else arr
    return res


def preprocess_input(t: TensorSpec, raw, *, base_dir: Path, sample_rate: int | None = None, batched: bool = False,
                     where: str = "", color: str | None = None) -> np.ndarray:
    """Raw data for input ``t`` -> its model-level tensor with a leading batch axis. An audio input needs
    ``sample_rate`` (or its spec's ``input_rate``); silence is the same at every rate and needs none."""
    if sample_rate is None and t.modality == "audio" and t.preprocessing is not None and getattr(t.preprocessing, "input_rate", 0) is None:
        arr = np.asarray(raw[0] if isinstance(raw, tuple) else raw)
        if arr.size and arr.dtype.kind in "fi" and not np.any(arr):  # a blank (silent) input: no rate to get wrong
            sample_rate = t.preprocessing.sample_rate
    return preprocess_feeds(t, raw, base_dir=base_dir, batched=batched, where=where, sample_rate=sample_rate, color=color)[t.name]


def preprocess_raw(spec, raw: Mapping[str, Any], *, base_dir: Path, sample_rate: int | None = None, color: str | None = None,
                   where: str = "") -> dict[str, np.ndarray]:
    """``Runtime.preprocess``: ``{input name (or a modality name that one input has): raw data}`` -> feeds.

    Images: HxWx3 uint8 frames, RGB unless ``color="bgr"`` (OpenCV); audio: a mono waveform with its rate
    (``(waveform, rate)`` or ``sample_rate=``); text: a string or a list of strings (a batch; the attention mask
    input it names is filled too); inputs without pre-processing pass through as tensors."""
    feeds: dict[str, np.ndarray] = {}
    names = [t.name for t in spec.inputs]
    for key, value in raw.items():
        t = _input_for(spec, key, names)
        if t.preprocessing is None:
            feeds[t.name] = np.asarray(value)
            continue
        batched = t.modality == "text" and isinstance(value, (list, tuple)) and not isinstance(value, str)
        opts: dict[str, Any] = {}
        m = get_modality(t.modality)
        if "sample_rate" in m.options:
            opts["sample_rate"] = sample_rate
        if "color" in m.options:
            opts["color"] = color
        out = preprocess_feeds(t, value, base_dir=base_dir, batched=batched, where=where, **opts)
        for name, arr in out.items():
            if name in feeds and name != t.name and name in raw:
                continue  # the caller's own mask wins over the one the tokenizer makes
            feeds[name] = arr
    return feeds


def _input_for(spec, key: str, names: list[str]):
    if key in names:
        return spec.input(key)
    by_modality = [t for t in spec.inputs if t.modality == key and t.preprocessing is not None]
    if len(by_modality) == 1:
        return by_modality[0]
    hint = close_match_hint(key, names)
    many = f"; several inputs are {key}: name one of {', '.join(t.name for t in by_modality)}" if by_modality else ""
    raise SpecError(f"no input named {key!r}{hint}{many}; inputs: {', '.join(names)}")


def native_kernels() -> bool:
    """Whether the compiled pre-processing kernels are built (else the numpy references run, a little slower)."""
    from ..frontends import native

    return native.available()
