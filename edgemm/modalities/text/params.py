"""Text pre-processing parameters: string(s) -> token ids (and an attention mask)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import SpecError
from ..base import OPTIONAL

KINDS = ("whitespace", "tokenizers")
PADDING = ("max_length", "longest")


@dataclass(frozen=True)
class TextPreprocess:
    """``tokenizer``: a file relative to the bundle (or recipe) folder: ``tokenizer.json`` of the Hugging Face
    ``tokenizers`` library (``kind = "tokenizers"``, the default for a ``.json`` file) or a vocabulary with one
    token per line split on whitespace (``kind = "whitespace"``, lower-cased when ``lowercase``, unknown words
    ``unk_id``). Ids are truncated to ``max_length`` and padded with ``pad_id`` (``padding = "max_length"``, or
    to the longest text of the batch for a dynamic length axis: ``"longest"``). ``attention_mask``: the name
    of the model input that receives the mask (1 over real tokens, then 0); None: the model takes none."""

    tokenizer: str = "vocab.txt"
    max_length: int = 16
    lowercase: bool = True
    pad_id: int = 0
    unk_id: int = 1
    kind: str | None = field(default=None, metadata=OPTIONAL)
    attention_mask: str | None = field(default=None, metadata=OPTIONAL)
    padding: str = field(default="max_length", metadata=OPTIONAL)

    def __post_init__(self):
        if not isinstance(self.tokenizer, str) or not self.tokenizer.strip():
            raise SpecError(f"text tokenizer must be a file name relative to the bundle (tokenizer.json or a vocabulary), not {self.tokenizer!r}")
        for key in ("max_length",):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"text {key} must be a positive integer, not {v!r}")
        for key in ("pad_id", "unk_id"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SpecError(f"text {key} must be a token id (an integer >= 0), not {v!r}")
        if not isinstance(self.lowercase, bool):
            raise SpecError(f"text lowercase must be true or false, not {self.lowercase!r}")
        if self.kind is not None and self.kind not in KINDS:
            raise SpecError(f"text kind must be one of {', '.join(map(repr, KINDS))}, not {self.kind!r}")
        if self.padding not in PADDING:
            raise SpecError(f"text padding must be one of {', '.join(map(repr, PADDING))}, not {self.padding!r}")
        if self.attention_mask is not None and (not isinstance(self.attention_mask, str) or not self.attention_mask):
            raise SpecError(f"text attention_mask must name a model input, not {self.attention_mask!r}")

    @property
    def tokenizer_kind(self) -> str:
        return self.kind or ("tokenizers" if self.tokenizer.lower().endswith(".json") else "whitespace")
