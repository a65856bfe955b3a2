"""The torch wrapper every family graph is exported through: ``forward`` returns a tuple in a fixed order, named
from the model's own output (a ``ModelOutput``'s keys, a dict's keys, ``output_<i>`` for a tuple).

Imported only when a family model is resolved (it imports torch).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch


def named_tensors(out: Any, single: str = "output") -> dict[str, torch.Tensor]:
    """A model's output as ``{name: tensor}``: a ModelOutput/dict by its keys (tensors only, in order), a
    tuple/list as ``output_<i>``, one tensor as ``single``. Nested values (hidden-state tuples) are left out."""
    if isinstance(out, torch.Tensor):
        return {single: out}
    if isinstance(out, Mapping):  # transformers' ModelOutput is an OrderedDict of its non-None fields
        return {str(k): v for k, v in out.items() if isinstance(v, torch.Tensor)}
    if isinstance(out, (tuple, list)):
        return {f"output_{i}": v for i, v in enumerate(out) if isinstance(v, torch.Tensor)}
    raise TypeError(f"the model returned a {type(out).__name__}; expected a tensor, a tuple, a dict or a ModelOutput")


class FamilyModule(torch.nn.Module):
    """Subclasses define ``forward(self, <input names>)`` as ``return self.pick(self.outputs(...))`` and
    ``outputs(...)`` returning ``{name: tensor}``; ``output_names`` is what ``forward`` returns, in order."""

    output_names: tuple[str, ...] = ()

    def outputs(self, *args) -> dict[str, torch.Tensor]:
        """The wrapped model's outputs by name (each subclass calls its model here)."""
        raise TypeError(f"{type(self).__name__} does not define outputs(); a FamilyModule subclass must")

    def pick(self, named: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(named[k] for k in self.output_names)
