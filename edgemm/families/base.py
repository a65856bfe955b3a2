"""The family contract: how a kind of model is recognised, loaded, named and split into graphs.

A family is a ``Family`` subclass (built-in ones live in ``edgemm/families/<name>/``, third-party ones come
from the ``edgemm.families`` entry-point group). Listing families imports none of the libraries they use
(transformers, timm): recognising a live module looks at its class and attributes, recognising a folder
reads its JSON files; ``load`` and ``graphs`` import what they need.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from ..iospec import TensorSpec
from .folder import ModelFolder


@dataclass(frozen=True)
class AttentionPattern:
    """Where a family's attention is: modules whose class name is one of ``classes``, with the ``Linear`` children
    ``q``, ``k``, ``v`` (their output channels are the heads: ``heads`` names the attribute holding how many) and
    ``out``. The pruning stage keeps those projections whole (channels cut out of a head would break the model's
    reshape into heads); the attention rewrite leaves them as the model computes them."""

    classes: tuple[str, ...]
    q: str = "q_proj"
    k: str = "k_proj"
    v: str = "v_proj"
    out: str = "out_proj"
    heads: str = "num_heads"

    def matches(self, module) -> bool:
        return any(n in self.classes for _, n in mro_names(module))

    def projections(self) -> tuple[str, ...]:
        return (self.q, self.k, self.v, self.out)


def find_attention(model, patterns) -> dict[str, "AttentionPattern"]:
    """``{module path: pattern}`` of the attention modules of ``model`` (a torch module) the patterns describe."""
    return {path: p for path, m in model.named_modules() for p in patterns if p.matches(m)}


@dataclass
class FamilyGraph:
    """One graph of a family model, as the family declares it.

    ``module``: an ``edgemm.families.modules.FamilyModule`` whose ``forward`` takes ``inputs`` in order and
    whose ``outputs(...)`` returns every named output it can give; ``keep``: the outputs the bundle holds, in
    order (None: every tensor output whose only batch-coupled axis is axis 0); ``feeds(batch, seed)``: valid
    inputs (numpy, keyed by input name); ``data``: what the graph's manifest entry records beyond the IOSpec
    (pre-processing the IOSpec cannot express, the tokenizer, the family's settings); ``labels``: class names
    of a classification output (used when their number matches the output's last axis)."""

    module: Any
    inputs: tuple[TensorSpec, ...]
    feeds: Callable[[int, int], dict[str, np.ndarray]]
    keep: tuple[str, ...] | None = None
    data: dict = field(default_factory=dict)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # class names of classification outputs


class Family(ABC):
    """A kind of model edgemm knows. Subclasses set ``name`` and implement what applies to them:

    - ``recognises_module(obj)``: True for a live model of this family (a class, a config's ``model_type``,
      timm's ``pretrained_cfg`` ...); no import of the family's library is needed to answer;
    - ``recognises_folder(folder)``: True for a model folder of this family (``folder.model_type``, files);
    - ``load(folder)``: the model object from the folder (safetensors need no trust; a pickle needs it);
    - ``graphs(model, folder)``: ``{graph name: FamilyGraph}`` (``folder`` is None for a live object);
    - ``attention``: :class:`AttentionPattern` s of the family's attention modules (``attention_modules`` finds them).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()  # Hugging Face config.model_type values this family takes
    library: ClassVar[str] = ""  # the package the family's models come from (for messages)
    attention: ClassVar[tuple[AttentionPattern, ...]] = ()  # the family's attention modules (rewrite and pruning)

    def recognises_module(self, obj) -> bool:
        return False

    def recognises_folder(self, folder: ModelFolder) -> bool:
        return bool(self.model_types) and folder.model_type in self.model_types

    @abstractmethod
    def load(self, folder: ModelFolder):
        """The model saved in ``folder``."""

    @abstractmethod
    def graphs(self, model, folder: ModelFolder | None) -> dict[str, FamilyGraph]:
        """The model's graphs by name, each a module with named inputs and valid feeds."""

    def attention_modules(self, module) -> dict[str, AttentionPattern]:
        """``{path: pattern}`` of the attention modules inside a graph's module (paths as ``named_modules`` gives them)."""
        return find_attention(module, self.attention)


def mro_names(obj) -> list[tuple[str, str]]:
    """``[(module, class name), ...]`` of an object's class hierarchy: recognising a library's class without
    importing the library."""
    return [(getattr(c, "__module__", "") or "", c.__name__) for c in type(obj).__mro__]


def hf_model_type(obj) -> str | None:
    """``obj.config.model_type`` of a transformers model (None for anything else), read without importing transformers."""
    if not any(m.startswith("transformers.") and n == "PreTrainedModel" for m, n in mro_names(obj)):
        return None
    value = getattr(getattr(obj, "config", None), "model_type", None)
    return value if isinstance(value, str) else None
