"""A model folder's default pre-processing (``preprocessor_config.json``, ``tokenizer.json``, timm's ``pretrained_cfg``)
-> the IOSpec's pre-processing (edgemm.modalities), with what it cannot say kept as data in the graph's manifest entry.

A Hugging Face image processor (shortest-edge resize, centre crop, Pillow bicubic/bilinear, rescale, mean/std) is
expressed exactly (``exact: true``); a tokenizer folder gives the text input's ``TextPreprocess`` (the
``tokenizer.json`` itself, padded to the model's length, the attention mask input named). What cannot be said
is recorded with ``exact: false`` and ``not_expressed``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from ..iospec import ImagePreprocess, TextPreprocess

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
    """A Hugging Face image processor's config -> ``(ImagePreprocess, what it records beyond that)``."""
    config = dict(config or {})
    normalize = config.get("do_normalize", True)
    mean = _three(config.get("image_mean"), IMAGENET_MEAN) if normalize else (0.0, 0.0, 0.0)
    std = _three(config.get("image_std"), IMAGENET_STD) if normalize else (1.0, 1.0, 1.0)
    do_resize = config.get("do_resize", True)
    crop = _hw(config.get("crop_size"), model_size) if config.get("do_center_crop", False) else None
    resize = config.get("size")
    shortest = int(resize["shortest_edge"]) if do_resize and isinstance(resize, Mapping) and "shortest_edge" in resize else None
    size = crop or (_hw(resize, model_size) if do_resize else model_size)
    rest: dict[str, Any] = {"processor": config.get("image_processor_type") or config.get("feature_extractor_type")}
    inexact = []
    resample = RESAMPLE.get(config.get("resample"), config.get("resample"))
    kind = {"bicubic": "bicubic", "bilinear": "bilinear-pil"}.get(resample, "bicubic")
    if resample is not None:
        rest["resample"] = resample
        if resample not in ("bicubic", "bilinear"):
            inexact.append(f"{resample} resampling (bicubic used)")
    if shortest is not None:
        rest["resize_shortest_edge"] = shortest
    if crop:
        rest["center_crop"] = list(crop)
    if shortest is not None and crop:
        fit, edge = "center_crop", shortest
    elif shortest is not None:  # a variable output size: the model's fixed size is all a bundle can give
        fit, edge = "stretch", None
        inexact.append("shortest-edge resize without a crop (stretched to the model's size)")
    elif crop:
        fit, edge = "center_crop", max(_hw(resize, size)) if do_resize else None
        if do_resize and _hw(resize, size)[0] != _hw(resize, size)[1]:
            inexact.append("a non-square resize before the crop")
    else:
        fit, edge = "stretch", None
    rescale = 1 / 255
    factor = config.get("rescale_factor")
    if config.get("do_rescale", True) and isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor > 0:
        rescale = float(factor)
        if abs(factor - 1 / 255) > 1e-9:
            rest["rescale_factor"] = factor
    elif not config.get("do_rescale", True):
        inexact.append("no rescale (frames are 8-bit)")
    if size != model_size:
        inexact.append(f"processor size {list(size)} differs from the model's {list(model_size)}")
        size = model_size
    pre = ImagePreprocess(size=size, mean=mean, std=std, resize=kind, fit=fit, shortest_edge=edge if fit == "center_crop" else None,
                          rescale=rescale)
    rest["exact"] = not inexact
    if inexact:
        rest["not_expressed"] = inexact
    return pre, {k: v for k, v in rest.items() if v is not None}


def image_from_timm(cfg: Mapping[str, Any]) -> tuple[ImagePreprocess, dict]:
    """timm's ``pretrained_cfg`` (input_size, mean, std, crop_pct, interpolation) -> ``(ImagePreprocess, rest)``."""
    c, h, w = (list(cfg.get("input_size") or (3, 224, 224)) + [224, 224])[:3]
    rest: dict[str, Any] = {"processor": "timm pretrained_cfg"}
    inexact = []
    interp = cfg.get("interpolation")
    kind = {"bicubic": "bicubic", "bilinear": "bilinear-pil"}.get(interp or "bilinear", "bicubic")
    crop_pct = cfg.get("crop_pct")
    fit, edge = "stretch", None
    if isinstance(crop_pct, (int, float)) and crop_pct < 1.0:
        rest["crop_pct"] = float(crop_pct)
        rest["crop_mode"] = cfg.get("crop_mode", "center")
        fit, edge = "center_crop", int(math.floor(max(int(h), int(w)) / crop_pct))
        inexact.append("torchvision rounds the centre crop's offset, the bundle floors it (an odd margin shifts one pixel)")
    if interp:
        rest["resample"] = interp
        if interp not in ("bicubic", "bilinear"):
            inexact.append(f"{interp} resampling (bicubic used)")
    pre = ImagePreprocess(size=(int(h), int(w)), mean=_three(cfg.get("mean"), IMAGENET_MEAN), std=_three(cfg.get("std"), IMAGENET_STD),
                          resize=kind, fit=fit, shortest_edge=edge)
    rest["exact"] = not inexact
    if inexact:
        rest["not_expressed"] = inexact
    return pre, rest


def text_from_tokenizer(folder, length: int, mask_input: str | None = "attention_mask",
                        pad_id: int | None = None) -> tuple[TextPreprocess | None, dict]:
    """A folder's ``tokenizer.json`` (+ ``tokenizer_config.json`` / ``special_tokens_map.json`` for the pad token)
    -> ``(TextPreprocess naming "tokenizer.json" relative to the folder, what the graph records)``. None without one."""
    tok_path = getattr(folder, "tokenizer", None)
    if folder is None or tok_path is None:
        return None, {"tokenizer": {"file": "tokenizer.json", "present": False, "shipped": False}, "max_length": length}
    pad = pad_token(Path(folder.path))
    if pad is not None:
        from ..modalities.text.tokenizer import load_tokenizer

        p = Path(tok_path)
        found = load_tokenizer(str(p), p.stat().st_mtime_ns).token_to_id(pad)
        pad_id = found if found is not None else pad_id
    pre = TextPreprocess(tokenizer="tokenizer.json", max_length=length, pad_id=int(pad_id or 0), kind="tokenizers",
                         attention_mask=mask_input)
    return pre, {"tokenizer": {"file": "tokenizer.json", "present": True, "shipped": True, "pad_token": pad}, "max_length": length}


def pad_token(folder: Path) -> str | None:
    """The pad token a ``save_pretrained`` tokenizer folder names (tokenizer_config.json, then special_tokens_map.json)."""
    import json

    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        p = folder / name
        if not p.is_file():
            continue
        try:
            value = json.loads(p.read_text(encoding="utf-8")).get("pad_token")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, Mapping):
            value = value.get("content")
        if isinstance(value, str) and value:
            return value
    return None


def audio_record(config: Mapping[str, Any] | None, kind: str) -> dict:
    """An audio feature extractor's config kept as data (the IOSpec's AudioPreprocess is a different log-mel)."""
    keep = ("feature_extractor_type", "sampling_rate", "do_normalize", "feature_size", "n_fft", "hop_length",
            "chunk_length", "n_samples", "nb_max_frames", "padding_value", "return_attention_mask")
    data = {k: v for k, v in dict(config or {}).items() if k in keep}
    return {"input": kind, **data, "exact": False,
            "not_expressed": [f"{kind}: the bundle's audio pre-processing cannot express this feature extractor yet"]}


def audio_from_extractor(config: Mapping[str, Any] | None) -> tuple[Any, dict]:
    """A Hugging Face audio feature extractor's config -> ``(AudioPreprocess or None, what the graph records)``:
    ``Wav2Vec2FeatureExtractor`` -> the raw waveform (zero-mean unit-variance when ``do_normalize``),
    ``WhisperFeatureExtractor`` -> Whisper's log-mel of ``chunk_length`` seconds. None for other extractors."""
    from ..iospec import AudioPreprocess

    config = dict(config or {})
    kind = config.get("feature_extractor_type")
    rate = config.get("sampling_rate", 16000)
    record = {k: v for k, v in config.items() if k in ("feature_extractor_type", "sampling_rate", "do_normalize", "feature_size",
                                                        "n_fft", "hop_length", "chunk_length")}
    if not isinstance(rate, int) or isinstance(rate, bool) or rate < 1:
        return None, {**record, "exact": False, "not_expressed": [f"sampling_rate {rate!r}"]}
    if kind == "Wav2Vec2FeatureExtractor":
        pre = AudioPreprocess(sample_rate=rate, features="waveform", normalize=bool(config.get("do_normalize", True)),
                              fmax=rate / 2)
        return pre, {**record, "exact": True}
    if kind == "WhisperFeatureExtractor":
        n_fft, hop = int(config.get("n_fft", 400)), int(config.get("hop_length", 160))
        pre = AudioPreprocess(sample_rate=rate, features="whisper_log_mel", window_s=float(config.get("chunk_length", 30)),
                              n_fft=n_fft, win_length=n_fft, hop=hop, n_mels=int(config.get("feature_size", 80)), fmin=0.0,
                              fmax=min(8000.0, rate / 2))
        return pre, {**record, "exact": True}
    return None, {**record, "exact": False, "not_expressed": [f"{kind}: no audio features of edgemm say the same"]}
