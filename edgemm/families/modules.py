"""The torch wrappers a model is exported through when its output is more than a tensor: ``forward`` returns a
tuple in a fixed order, named from the model's own output (a ``ModelOutput``'s keys, a dict's keys, a namedtuple's
fields, ``output_<i>`` for a tuple; nested values with dotted names, see ``edgemm.torchutil.output_items``).

``FamilyModule`` is the base of every family graph; ``NamedOutputs`` wraps a plain ``nn.Module`` of the generic
path. Imported only when such a model is resolved (it imports torch).
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

import torch

from ..errors import SpecError, close_match_hint
from ..log import logger
from ..torchutil import output_items


def named_tensors(out: Any, single: str = "output", nested: bool = False) -> dict[str, torch.Tensor]:
    """A model's output as ``{name: tensor}``: a ModelOutput/dict by its keys (tensors only, in order), a
    tuple/list as ``output_<i>``, one tensor as ``single``. Nested values (hidden-state tuples, CLIP's
    ``text_model_output``) are left out unless ``nested`` (then named ``hidden_states.0``)."""
    items, _ = output_items(out, single)
    top = {k for k in (out.keys() if isinstance(out, Mapping) else ())}
    return {k: v for k, v in items if nested or "." not in k or k in top}


class FamilyModule(torch.nn.Module):
    """Subclasses define ``forward(self, <input names>)`` as ``return self.pick(self.outputs(...))`` and
    ``outputs(...)`` returning ``{name: tensor}``; ``output_names`` is what ``forward`` returns, in order."""

    output_names: tuple[str, ...] = ()

    def outputs(self, *args) -> dict[str, torch.Tensor]:
        """The wrapped model's outputs by name (each subclass calls its model here)."""
        raise TypeError(f"{type(self).__name__} does not define outputs(); a FamilyModule subclass must")

    def pick(self, named: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(named[k] for k in self.output_names)


class NamedOutputs(FamilyModule):
    """A plain ``nn.Module`` whose ``forward`` returns a dict, a namedtuple, a ModelOutput or nested tuples, as a
    module returning the chosen tensors in a fixed order (``output_names``). Its ``forward`` has the wrapped
    module's signature, so inputs keep their names."""

    def __init__(self, model: torch.nn.Module, output_names: Sequence[str] = ()):
        super().__init__()
        self.model = model
        self.output_names = tuple(output_names)

    def outputs(self, *args):
        items, _ = output_items(self.model(*args), what=f"{type(self.model).__name__}.forward")
        return dict(items)

    def forward(self, *args):
        return self.pick(self.outputs(*args))


def named_outputs(model: torch.nn.Module, args: Sequence[torch.Tensor], keep: Sequence[str] | None = None
                  ) -> tuple[NamedOutputs, dict[str, torch.Tensor]]:
    """``(wrapper, {name: tensor})``: ``model`` wrapped so that it returns its tensor outputs by name, run once on
    ``args`` (under no_grad). ``keep``: the names to keep, in order (None: all); an unknown name is one line.
    None values are left out with a log line."""
    with torch.no_grad():
        out = model(*args)
    what = f"{type(model).__name__}.forward"
    items, dropped = output_items(out, what=what)
    if dropped:
        logger.info("  %s returns None as %s: left out of the outputs", what, ", ".join(dropped))
    named = dict(items)
    if not named:
        raise SpecError(f"{what} returns no tensor (only None values); return at least one tensor")
    if keep is not None:
        unknown = [k for k in keep if k not in named]
        if unknown:
            raise SpecError(f"{what} has no output {unknown[0]!r}{close_match_hint(unknown[0], list(named))}; "
                            f"its outputs: {', '.join(named)}")
        named = {k: named[k] for k in keep}
    wrapper = NamedOutputs(model, tuple(named))
    _copy_signature(wrapper, model)
    wrapper.train(model.training)
    return wrapper, named


def _copy_signature(wrapper: NamedOutputs, model: torch.nn.Module) -> None:
    """Give the wrapper the wrapped forward's parameters (spec inference and the exporters read
    ``inspect.signature(forward)``): a subclass per wrapped class whose ``forward`` carries that signature."""
    sig = inspect.signature(model.forward)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)

    def forward(self, *args):
        return self.pick(self.outputs(*args))

    forward.__signature__ = sig.replace(parameters=[self_param, *sig.parameters.values()])
    wrapper.__class__ = type(f"NamedOutputs_{type(model).__name__}", (NamedOutputs,), {"forward": forward})
