"""timm image models: any module ``timm.create_model`` builds, recognised by its ``pretrained_cfg`` (or the older
``default_cfg``); a folder in timm's hub layout (``config.json`` with ``architecture`` + ``model.safetensors``).
Input ``pixel_values`` at the cfg's ``input_size``, normalised with its mean/std; output ``logits`` (``features``
for a model built with ``num_classes=0``)."""
from __future__ import annotations

from typing import Any, Mapping

from ... import layout
from ...errors import EdgemmError, one_line
from ...iospec import TensorSpec
from ..base import Family, FamilyGraph
from ..folder import FolderError, ModelFolder
from ..preprocessing import image_from_timm


def timm_cfg(obj) -> Mapping[str, Any] | None:
    """The model's timm data config (``pretrained_cfg``, else ``default_cfg``) when it names an input size."""
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(obj, attr, None)
        if isinstance(cfg, Mapping) and isinstance(cfg.get("input_size"), (list, tuple)) and len(cfg["input_size"]) == 3:
            return cfg
    return None


class TimmFamily(Family):
    name = "timm"
    description = "timm image models (timm.create_model: pixel_values -> logits; size/mean/std from pretrained_cfg)"
    library = "timm"

    def recognises_module(self, obj) -> bool:
        return callable(getattr(obj, "forward", None)) and hasattr(obj, "parameters") and timm_cfg(obj) is not None

    def recognises_folder(self, folder: ModelFolder) -> bool:
        cfg = folder.config or {}
        return folder.model_type is None and isinstance(cfg.get("architecture"), str)

    def load(self, folder: ModelFolder):
        from ..deps import import_timm

        cfg = folder.config or {}
        timm = import_timm("timm")
        kwargs = dict(cfg.get("model_args") or {}) if isinstance(cfg.get("model_args"), Mapping) else {}
        for key in ("num_classes", "global_pool", "in_chans"):
            if key in cfg and key not in kwargs:
                kwargs[key] = cfg[key]
        try:
            model = timm.create_model(cfg["architecture"], pretrained=False, **kwargs)
        except Exception as exc:  # noqa: BLE001 - an unknown architecture or bad arguments: the folder's config
            raise FolderError(f"timm cannot build {cfg['architecture']!r} from {folder.path / 'config.json'} "
                              f"({type(exc).__name__}: {one_line(exc)[:200]}); check the architecture name and your timm version") from exc
        model.load_state_dict(_state_dict(folder))
        if isinstance(cfg.get("pretrained_cfg"), Mapping):
            model.pretrained_cfg = {**(getattr(model, "pretrained_cfg", None) or {}), **cfg["pretrained_cfg"]}
        return model.eval()

    def graphs(self, model, folder: ModelFolder | None) -> dict[str, FamilyGraph]:
        from ..feeds import images
        from ..wrappers import PixelValues

        cfg = timm_cfg(model) or {}
        pre, data = image_from_timm(cfg)
        channels = int(cfg["input_size"][0])
        single = "logits" if int(getattr(model, "num_classes", 1) or 0) > 0 else "features"

        def feeds(batch: int, seed: int):
            return {"pixel_values": images(batch, pre.size, pre.mean, pre.std, seed, channels)}

        pixel = TensorSpec("pixel_values", "float32", ("batch", channels, *pre.size), "image", pre if channels == 3 else None)
        arch = cfg.get("architecture") or type(model).__name__
        names = (folder.config or {}).get("label_names") if folder is not None else None
        names = names or cfg.get("label_names")
        labels = {single: tuple(str(n) for n in names)} if isinstance(names, (list, tuple)) and names and single == "logits" else {}
        return {layout.MAIN: FamilyGraph(PixelValues(model, single), (pixel,), feeds, keep=(single,), labels=labels,
                                         data={"architecture": arch, "preprocessing": {"pixel_values": data}})}


def _state_dict(folder: ModelFolder):
    """The folder's weights: safetensors (no code), else torch's weights-only loader."""
    from ..hf import read_safetensors
    from ...torchload import load_checkpoint

    w = folder.weights
    if w is None:
        raise FolderError(f"the timm model folder {folder.path} has no weights (model.safetensors or pytorch_model.bin)")
    if w.suffix == ".safetensors":
        return read_safetensors(w)
    state = load_checkpoint(w)
    if not isinstance(state, Mapping):
        raise EdgemmError(f"{w} holds a {type(state).__name__}, not a state_dict; save the weights with safetensors")
    return state


FAMILY = TimmFamily()
