"""Templated captions and prompts of the seed models, and their word-level tokenizers.

Two kinds of text:
- **captions** (``seed_text_image``, ``seed_av_text``) carry PARTIAL information about the digit: its
  parity ("an odd digit"), its half ("a digit above four"), both ("a small even digit"), or nothing ("a
  handwritten digit"). No caption names the digit, so the image (or speech) must still be read, and the
  caption settles the confusions a hard frame leaves (4 vs 9: even vs odd; 3 vs 5: below vs above four).
- **prompts** (``seed_dual_encoder``) name the digit ("a photo of the digit seven", "a handwritten 7"):
  the contrastive training pairs and the zero-shot class prompts.

Tokenizers are ``tokenizers`` WordLevel models (lower-case, whitespace split, ``[PAD]`` = 0, ``[UNK]`` = 1),
saved as ``export/seeds/<model>.tokenizer.json``; ids are right-padded to a fixed length.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAD, UNK = "[PAD]", "[UNK]"
CAPTION_LENGTH = 8
PROMPT_LENGTH = 8

# Each caption kind: (templates per class of the property, the property of a digit).
PARITY = ({"even": ("an even digit", "the number is even", "it shows an even number", "an even number on a frame"),
           "odd": ("an odd digit", "the number is odd", "it shows an odd number", "an odd number on a frame")},
          lambda d: "even" if d % 2 == 0 else "odd")
HALF = ({"low": ("a digit below five", "a small digit", "the number is below five", "a low number"),
         "high": ("a digit above four", "a large digit", "the number is above four", "a high number")},
        lambda d: "low" if d < 5 else "high")
BOTH = ({f"{s} {p}": (f"a {s} {p} digit", f"the number is {s} and {p}") for s in ("small", "large") for p in ("even", "odd")},
        lambda d: f"{'small' if d < 5 else 'large'} {'even' if d % 2 == 0 else 'odd'}")
NEUTRAL = ("a handwritten digit", "a digit on a frame", "a picture of a number")
# How often each kind is drawn: neutral captions keep the image (or speech) branch honest.
KIND_WEIGHTS = {"parity": 0.35, "half": 0.35, "both": 0.15, "neutral": 0.15}

PROMPT_TEMPLATES = ("a photo of the digit {word}", "a picture of a handwritten {word}", "the number {word}",
                    "a photo of a {numeral}", "an image showing the digit {numeral}", "a handwritten {numeral}")


def caption_for(digit: int, rng: np.random.Generator) -> str:
    """One caption of ``digit`` with partial information (or none), drawn by ``KIND_WEIGHTS``."""
    kinds = list(KIND_WEIGHTS)
    kind = kinds[int(rng.choice(len(kinds), p=list(KIND_WEIGHTS.values())))]
    if kind == "neutral":
        return NEUTRAL[int(rng.integers(len(NEUTRAL)))]
    table, prop = {"parity": PARITY, "half": HALF, "both": BOTH}[kind]
    options = table[prop(int(digit))]
    return options[int(rng.integers(len(options)))]


def caption_digits() -> dict[str, set[int]]:
    """Every caption -> the digits it may describe (a caption never fits fewer than two)."""
    out: dict[str, set[int]] = {t: set(range(10)) for t in NEUTRAL}
    for table, prop in (PARITY, HALF, BOTH):
        for d in range(10):
            for t in table[prop(d)]:
                out.setdefault(t, set()).add(d)
    return out


def captions(digits, rng: np.random.Generator) -> list[str]:
    return [caption_for(int(d), rng) for d in digits]


def neutral_captions(n: int) -> list[str]:
    """Captions that say nothing about the digit (the image-only baseline of a caption model)."""
    return [NEUTRAL[0]] * n


def prompt_for(digit: int, template: str) -> str:
    return template.format(word=NUMBER_WORDS[digit], numeral=str(digit))


def prompts(digits, rng: np.random.Generator) -> list[str]:
    """A prompt naming each digit, with a random template (contrastive training pairs)."""
    return [prompt_for(int(d), PROMPT_TEMPLATES[int(rng.integers(len(PROMPT_TEMPLATES)))]) for d in digits]


def class_prompts() -> list[list[str]]:
    """Every template for every class: ``[class][template]`` (the zero-shot prompt ensemble)."""
    return [[prompt_for(d, t) for t in PROMPT_TEMPLATES] for d in range(10)]


def caption_words() -> list[str]:
    texts = [t for table, _ in (PARITY, HALF, BOTH) for opts in table.values() for t in opts] + list(NEUTRAL)
    return sorted({w for t in texts for w in t.split()})


def prompt_words() -> list[str]:
    texts = [p for row in class_prompts() for p in row]
    return sorted({w for t in texts for w in t.split()})


def build_tokenizer(words, max_length: int):
    """A WordLevel tokenizer over ``words``: lower-case, whitespace split, right-padded/truncated to ``max_length``."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab = {PAD: 0, UNK: 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.enable_padding(pad_id=0, pad_token=PAD, length=max_length)
    tok.enable_truncation(max_length=max_length)
    return tok


def caption_tokenizer():
    return build_tokenizer(caption_words(), CAPTION_LENGTH)


def prompt_tokenizer():
    return build_tokenizer(prompt_words(), PROMPT_LENGTH)


def load_tokenizer(path: str | Path):
    from tokenizers import Tokenizer

    from ...errors import SpecError

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"tokenizer {p} not found; rebuild it with `python scripts/train_seeds.py --data-only`")
    return Tokenizer.from_file(str(p))


def encode(tokenizer, texts) -> np.ndarray:
    """Texts -> int64 token ids ``[N, length]`` (the tokenizer's fixed padded length)."""
    return np.asarray([e.ids for e in tokenizer.encode_batch([str(t) for t in texts])], dtype=np.int64)
