"""The text frontend: string -> int64 token ids with a whitespace tokenizer over a vocabulary file."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from typing import Any

import numpy as np

from ..errors import SpecError
TextPreprocess = Any  # edgemm.modalities' params dataclass, duck-typed: the frontends sit below the modalities


@lru_cache(maxsize=8)
def load_vocab(path: str) -> dict[str, int]:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"tokenizer vocabulary {path} not found; ship it beside the recipe/bundle (one token per line)")
    return {tok: i for i, tok in enumerate(p.read_text(encoding="utf-8").splitlines())}


def preprocess_text(text: str, cfg: TextPreprocess, base_dir: Path) -> np.ndarray:
    if not isinstance(text, str):
        raise SpecError(f"text must be a str, got {type(text).__name__}")
    vocab = load_vocab(str(Path(base_dir) / cfg.tokenizer))
    words = (text.lower() if cfg.lowercase else text).split()
    ids = [vocab.get(w, cfg.unk_id) for w in words][: cfg.max_length]
    ids += [cfg.pad_id] * (cfg.max_length - len(ids))
    return np.asarray([ids], dtype=np.int64)
