"""The text modality: a string (or a list of them) -> int64 token ids, and the attention mask input it names.

A real tokenizer (``tokenizer.json`` through the ``tokenizers`` library, shipped inside the bundle) or the
whitespace vocabulary of older bundles; see ``params.TextPreprocess``."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import SpecError
from ..base import Context, Modality, unknown_options
from .params import TextPreprocess
from .tokenizer import encode, vocabulary


def token_ids(batch: int, length: int, vocab_size: int, seed: int, *, bos: int | None = None, eos: int | None = None,
              pad: int | None = None, min_tokens: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int64 ``[batch, length]``: each row ``[bos] words... [eos]`` then padding;
    the mask is a prefix of ones over the real tokens. Words avoid the special ids."""
    rng = np.random.default_rng(seed)
    special = {t for t in (bos, eos, pad) if t is not None}
    ordinary = np.array([t for t in range(vocab_size) if t not in special] or [0], np.int64)
    ids = np.full((batch, length), pad if pad is not None else (eos if eos is not None else 0), np.int64)
    mask = np.zeros((batch, length), np.int64)
    fixed = (bos is not None) + (eos is not None)
    for b in range(batch):
        words = int(rng.integers(max(1, min_tokens), max(2, length - fixed + 1)))
        words = min(words, length - fixed)
        row = ([bos] if bos is not None else []) + list(rng.choice(ordinary, words)) + ([eos] if eos is not None else [])
        ids[b, :len(row)] = row
        mask[b, :len(row)] = 1
    return ids, mask


def sentences(words: Sequence[str], batch: int, seed: int, max_words: int) -> list[str]:
    """``batch`` strings of 1..max_words words drawn from ``words``."""
    rng = np.random.default_rng(seed)
    words = [w for w in words if w.strip()] or ["a"]
    return [" ".join(rng.choice(words, int(rng.integers(1, max(2, max_words + 1))))) for _ in range(batch)]


def as_texts(raw, ctx: Context, name: str) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, (list, tuple)) or (isinstance(raw, np.ndarray) and raw.dtype.kind in "UO"):
        texts = [x for x in np.asarray(raw, dtype=object).reshape(-1)] if isinstance(raw, np.ndarray) else list(raw)
        if texts and all(isinstance(x, str) for x in texts):
            return texts
    raise SpecError(f"{ctx.prefix}{name!r} expects a string or a list of strings, got {type(raw).__name__}")


class TextModality(Modality):
    name = "text"
    description = "strings: tokenizer.json (tokenizers library) or a whitespace vocabulary, padding and attention mask"
    params = TextPreprocess

    def preprocess(self, t, raw, ctx: Context) -> dict[str, np.ndarray]:
        unknown_options(self, ctx)
        cfg: TextPreprocess = t.preprocessing
        ids, mask = encode(as_texts(raw, ctx, t.name), cfg, ctx.base_dir)
        out = {t.name: ids.astype(t.dtype, copy=False)}
        if cfg.attention_mask is not None:
            out[cfg.attention_mask] = mask
        return out

    def assets(self, pre) -> dict[str, str]:
        return {"tokenizer": pre.tokenizer} if pre is not None else {}

    def generate(self, t, batch: int, seed: int, base_dir: Path | None = None) -> dict[str, np.ndarray]:
        """Real sentences of the tokenizer's own words, tokenized: ids inside the vocabulary, prefix masks."""
        cfg: TextPreprocess = t.preprocessing
        texts = sentences(vocabulary(cfg, base_dir), batch, seed, max(1, cfg.max_length // 2))
        return self.preprocess(t, texts, Context(base_dir=Path(base_dir or "."), batched=True))

    def raw_example(self, t, seed: int = 0, base_dir: Path | None = None):
        return sentences(vocabulary(t.preprocessing, base_dir), 1, seed, max(1, t.preprocessing.max_length // 2))[0]


MODALITY = TextModality()
__all__ = ["TextPreprocess", "TextModality", "MODALITY", "token_ids", "sentences", "encode"]
