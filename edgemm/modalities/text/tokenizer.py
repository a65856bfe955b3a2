"""Tokenizers of the text modality: ``tokenizer.json`` through the ``tokenizers`` library, or a whitespace
vocabulary (the format of bundles written before it). Both give ``(ids, mask)`` int64 ``[N, length]``."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import EdgemmError, SpecError, one_line
from .params import TextPreprocess

SPECIAL_LOOKING = re.compile(r"^(\[[A-Za-z_]+\]|<\|?[^<>\s]*\|?>)$")  # [PAD], <s>, <|endoftext|>: not words of a sentence


@lru_cache(maxsize=8)
def load_tokenizer(path: str, mtime_ns: int):
    """A ``tokenizers.Tokenizer`` from ``path`` (cached per file version); a missing or corrupt file is one line."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise EdgemmError("the text input's tokenizer.json needs the tokenizers package: pip install tokenizers "
                          "(or edgemm[hf])") from exc
    try:
        json.loads(Path(path).read_text(encoding="utf-8"))
        return Tokenizer.from_file(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"tokenizer {path} cannot be read ({type(exc).__name__}: {one_line(exc)[:200]}); "
                        "ship the tokenizer.json that tokenizer.save() or save_pretrained() wrote") from exc
    except Exception as exc:  # tokenizers raises its own Exception type for a schema it does not know
        raise SpecError(f"tokenizer {path} is not a tokenizers file ({one_line(exc)[:200]}); "
                        "ship the tokenizer.json that tokenizer.save() or save_pretrained() wrote") from exc


@lru_cache(maxsize=8)
def load_vocab(path: str, mtime_ns: int) -> dict[str, int]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"tokenizer vocabulary {path} cannot be read ({type(exc).__name__}); "
                        "ship it beside the recipe/bundle (one token per line)") from exc
    return {tok: i for i, tok in enumerate(lines)}


def tokenizer_file(cfg: TextPreprocess, base_dir: Path | None) -> Path:
    p = Path(base_dir or ".") / cfg.tokenizer
    if not p.is_file():
        raise SpecError(f"tokenizer file {p} not found; ship {cfg.tokenizer} beside the recipe/bundle "
                        f"({'the tokenizer.json of the model folder' if cfg.tokenizer_kind == 'tokenizers' else 'one token per line'})")
    return p


def _mtime(p: Path) -> int:
    return p.stat().st_mtime_ns


def encode(texts: list[str], cfg: TextPreprocess, base_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Strings -> ``(ids, mask)`` int64 ``[len(texts), length]`` (length: ``max_length``, or the longest text)."""
    for s in texts:
        if not isinstance(s, str):
            raise SpecError(f"text must be a str (or a list of them), got {type(s).__name__}")
    p = tokenizer_file(cfg, base_dir)
    if cfg.tokenizer_kind == "tokenizers":
        rows = [list(e.ids) for e in _tokenizer_encodings(texts, cfg, p)]
    else:
        vocab = load_vocab(str(p), _mtime(p))
        rows = [[vocab.get(w, cfg.unk_id) for w in (s.lower() if cfg.lowercase else s).split()][: cfg.max_length] for s in texts]
    length = cfg.max_length if cfg.padding == "max_length" else max(1, max((len(r) for r in rows), default=1))
    ids = np.full((len(texts), length), cfg.pad_id, np.int64)
    mask = np.zeros((len(texts), length), np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    return ids, mask


def _tokenizer_encodings(texts: list[str], cfg: TextPreprocess, p: Path):
    tok = load_tokenizer(str(p), _mtime(p))
    # The tokenizer's own truncation keeps its special tokens (start/end of text) inside max_length.
    tok.enable_truncation(cfg.max_length)
    tok.no_padding()
    return tok.encode_batch(texts)


def vocabulary(cfg: TextPreprocess, base_dir: Path | None) -> list[str]:
    """The ordinary (non-special) tokens of the tokenizer: what a valid-text generator draws words from."""
    p = tokenizer_file(cfg, base_dir)
    if cfg.tokenizer_kind == "tokenizers":
        tok = load_tokenizer(str(p), _mtime(p))
        special = {t.content for t in tok.get_added_tokens_decoder().values()} if hasattr(tok, "get_added_tokens_decoder") else set()
        special.add(getattr(tok.model, "unk_token", None))
        words = [w for w, i in tok.get_vocab(with_added_tokens=False).items()
                 if w not in special and i != cfg.pad_id and not SPECIAL_LOOKING.match(w)]
        return sorted(w.replace("</w>", "").replace("\u0120", "").replace("\u2581", "") for w in words)
    vocab = load_vocab(str(p), _mtime(p))
    return [w for w, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i not in (cfg.pad_id, cfg.unk_id)]
