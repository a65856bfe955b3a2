"""A model folder's default pre-processing (``preprocessor_config.json``, timm's ``pretrained_cfg``) -> the IOSpec's
``ImagePreprocess`` where it can say the same, and the rest kept as data in the graph's manifest entry.

``ImagePreprocess`` resizes the frame bilinearly to the model's size, scales to [0, 1] and normalises with
mean/std. What it cannot say (a shortest-edge resize then a centre crop, bicubic resampling, another rescale
factor) is recorded, with ``exact: false``, so that a reader knows the bundle's own pre-processing is an
approximation of the processor the model was trained with.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..iospec import ImagePreprocess

RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}  # PIL's codes
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _hw(value: Any, default: tuple[int, int]) -> tuple[int, int]:
    """``{"height", "width"}``, ``{"shortest_edge"}``, an int or a pair -> (height, width)."""
    if isinstance(value, Mapping):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value:
            return int(value["shortest_edge"]), int(value["shortest_edge"])
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return default


def _three(value: Any, default: tuple[float, float, float]) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),) * 3
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)  # type: ignore[return-value]
    return default


def image_from_processor(config: Mapping[str, Any] | None, model_size: tuple[int, int]) -> tuple[ImagePreprocess, dict]:
    """A Hugging Face image processor's config -> ``(ImagePreprocess, what it does beyond that)``."""
    config = dict(config or {})
    normalize = config.get("do_normalize", True)
    mean = _three(config.get("image_mean"), IMAGENET_MEAN) if normalize else (0.0, 0.0, 0.0)
    std = _three(config.get("image_std"), IMAGENET_STD) if normalize else (1.0, 1.0, 1.0)
    crop = _hw(config.get("crop_size"), model_size) if config.get("do_center_crop", False) else None
    size = crop or (_hw(config.get("size"), model_size) if config.get("do_resize", True) else model_size)
    pre = ImagePreprocess(size=size, mean=mean, std=std)
    rest: dict[str, Any] = {"processor": config.get("image_processor_type") or config.get("feature_extractor_type")}
    inexact = []
    resize = config.get("size")
    if isinstance(resize, Mapping) and "shortest_edge" in resize:
        rest["resize_shortest_edge"] = int(resize["shortest_edge"])
        inexact.append("shortest-edge resize")
    if crop:
        rest["center_crop"] = list(crop)
        inexact.append("center crop")
    resample = RESAMPLE.get(config.get("resample"), config.get("resample"))
    if resample is not None:
        rest["resample"] = resample
        if resample != "bilinear":
            inexact.append(f"{resample} resampling")
    factor = config.get("rescale_factor")
    if config.get("do_rescale", True) and isinstance(factor, (int, float)) and abs(factor - 1 / 255) > 1e-9:
        rest["rescale_factor"] = factor
        inexact.append(f"rescale factor {factor}")
    if size != model_size:
        inexact.append(f"processor size {list(size)} differs from the model's {list(model_size)}")
    rest["exact"] = not inexact
    if inexact:
        rest["not_expressed"] = inexact
    return pre, {k: v for k, v in rest.items() if v is not None}


def image_from_timm(cfg: Mapping[str, Any]) -> tuple[ImagePreprocess, dict]:
    """timm's ``pretrained_cfg`` (input_size, mean, std, crop_pct, interpolation) -> ``(ImagePreprocess, rest)``."""
    c, h, w = (list(cfg.get("input_size") or (3, 224, 224)) + [224, 224])[:3]
    pre = ImagePreprocess(size=(int(h), int(w)), mean=_three(cfg.get("mean"), IMAGENET_MEAN), std=_three(cfg.get("std"), IMAGENET_STD))
    rest: dict[str, Any] = {"processor": "timm pretrained_cfg"}
    inexact = []
    crop_pct = cfg.get("crop_pct")
    if isinstance(crop_pct, (int, float)) and crop_pct < 1.0:
        rest["crop_pct"] = float(crop_pct)
        rest["crop_mode"] = cfg.get("crop_mode", "center")
        inexact.append(f"resize to size / {crop_pct} then center crop")
    interp = cfg.get("interpolation")
    if interp:
        rest["resample"] = interp
        if interp != "bilinear":
            inexact.append(f"{interp} resampling")
    rest["exact"] = not inexact
    if inexact:
        rest["not_expressed"] = inexact
    return pre, rest


def audio_record(config: Mapping[str, Any] | None, kind: str) -> dict:
    """An audio feature extractor's config kept as data (the IOSpec's AudioPreprocess is a different log-mel)."""
    keep = ("feature_extractor_type", "sampling_rate", "do_normalize", "feature_size", "n_fft", "hop_length",
            "chunk_length", "n_samples", "nb_max_frames", "padding_value", "return_attention_mask")
    data = {k: v for k, v in dict(config or {}).items() if k in keep}
    return {"input": kind, **data, "exact": False,
            "not_expressed": [f"{kind}: the bundle's audio pre-processing cannot express this feature extractor yet"]}
