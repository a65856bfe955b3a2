"""A model folder as a user brings it: written by ``save_pretrained`` (``config.json`` + safetensors weights,
``preprocessor_config.json``, ``tokenizer.json``) or holding a module saved with ``torch.save``.

Reading the JSON files and listing the weights runs no code. A ``torch.save`` module is a pickle: it is
loaded only when the user trusts the folder (edgemm.trust: ``with edgemm.trust.allow_code():`` or
``trust_code=True``); safetensors weights need no trust.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EdgemmError, UntrustedCode
from ..safeio import read_json
from ..trust import code_allowed, untrusted

SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin",)
# a whole module saved with torch.save(module, path): names users give such files
MODULE_FILES = ("model.pt", "model.pth", "module.pt", "module.pth")


class FolderError(EdgemmError):
    """A model folder edgemm cannot use as it is."""


@dataclass
class ModelFolder:
    """What a model folder holds, read without running any of it."""

    path: Path
    config: dict | None = None  # config.json
    preprocessor: dict | None = None  # preprocessor_config.json
    tokenizer: Path | None = None  # tokenizer.json
    files: list[str] = field(default_factory=list)  # top-level file names

    @classmethod
    def read(cls, path: str | Path) -> "ModelFolder":
        path = Path(path)
        if not path.is_dir():
            raise FolderError(f"{path} is not a folder; pass a model folder written by save_pretrained or torch.save")
        files = sorted(p.name for p in path.iterdir() if p.is_file())
        fix = "it must be the JSON object save_pretrained writes; re-save the model"
        config = read_json(path / "config.json", "model config", error=FolderError, fix=fix) if "config.json" in files else None
        pre = (read_json(path / "preprocessor_config.json", "pre-processing config", error=FolderError, fix=fix)
               if "preprocessor_config.json" in files else None)
        if pre is None and "processor_config.json" in files:  # transformers 5 saves a processor's parts in one file
            pre = nested_processor(read_json(path / "processor_config.json", "processor config", error=FolderError, fix=fix))
        tok = path / "tokenizer.json" if "tokenizer.json" in files else None
        return cls(path, config, pre, tok, files)

    @property
    def model_type(self) -> str | None:
        """Hugging Face's ``config.model_type`` (None: not a transformers folder)."""
        value = (self.config or {}).get("model_type")
        return value if isinstance(value, str) else None

    @property
    def architectures(self) -> list[str]:
        value = (self.config or {}).get("architectures") or []
        return [a for a in value if isinstance(a, str)] if isinstance(value, list) else []

    @property
    def weights(self) -> Path | None:
        """The weights file the model's hash is taken from: safetensors first, then torch's pickled formats."""
        for name in SAFETENSORS + PICKLED_WEIGHTS + MODULE_FILES:
            if name in self.files:
                return self.path / name
        shards = [f for f in self.files if f.endswith(".safetensors")]
        return self.path / shards[0] if shards else None

    def sha256(self) -> str:
        w = self.weights
        if w is None:
            return ""
        if w.name.endswith(".index.json"):  # sharded: hash the index (it names every shard)
            return hashlib.sha256(w.read_bytes()).hexdigest()
        h = hashlib.sha256()
        with open(w, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        return h.hexdigest()

    def has_safetensors(self) -> bool:
        return any(f.endswith(".safetensors") or f == "model.safetensors.index.json" for f in self.files)

    def module_file(self) -> Path | None:
        """A file holding a whole pickled module (``torch.save(module, ...)``), when the folder has one."""
        for name in MODULE_FILES:
            if name in self.files:
                return self.path / name
        pickles = [f for f in self.files if f.endswith((".pt", ".pth")) and f not in PICKLED_WEIGHTS]
        return self.path / pickles[0] if len(pickles) == 1 else None

    def describe(self) -> str:
        """What the folder holds, for error lines: ``config.json (model_type 'bert'), model.safetensors``."""
        parts = []
        for f in self.files[:6]:
            parts.append(f"{f} (model_type {self.model_type!r})" if f == "config.json" and self.model_type else f)
        more = len(self.files) - 6
        return ", ".join(parts) + (f" and {more} more" if more > 0 else "") if parts else "no files"


def nested_processor(config) -> dict | None:
    """The image processor (or audio feature extractor) inside a ``processor_config.json`` (``{"image_processor":
    {...}, ...}``); None when it holds neither."""
    if not isinstance(config, dict):
        return None
    for key in ("image_processor", "feature_extractor"):
        part = config.get(key)
        if isinstance(part, dict):
            return part
    return None


def load_pickled_module(path: Path):
    """``torch.load`` of a whole module, only when the user trusts it (unpickling runs code)."""
    from ..lazy import lazy_import
    from ..torchload import load_checkpoint

    if not code_allowed(path):
        raise untrusted(f"the model folder {path.parent} holds a module saved with torch.save ({path.name})",
                        "and loading it would unpickle it, which can run code")
    torch = lazy_import("torch", "loading a torch.save module")
    obj = load_checkpoint(path, trust_code=True)
    if not isinstance(obj, torch.nn.Module):
        kind = "a state_dict (weights only)" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise FolderError(f"{path} holds {kind}, not a module; save the model itself (torch.save(model, path)), "
                          "or save_pretrained it, or export it from Python with edgemm.export(model, example_inputs=...)")
    return obj.eval()


__all__ = ["ModelFolder", "FolderError", "UntrustedCode", "load_pickled_module"]
