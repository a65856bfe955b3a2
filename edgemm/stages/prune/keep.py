"""``keep`` names: which modules a pruning request leaves whole, matched against a model's module names.

A name covers the module itself and every module under it (``image.body.0`` covers ``image.body.0.0``).
The structured pruner keeps the channel groups holding a covered module; 2:4 sparsity leaves covered
layers dense.
"""
from __future__ import annotations

from typing import Hashable, Mapping, Sequence, TypeVar

from ...errors import EdgemmError, close_match_hint

K = TypeVar("K", bound=Hashable)


def covers(keep: str, module: str) -> bool:
    """``keep`` names ``module`` itself or a container of it (``image.body.0`` covers ``image.body.0.0``)."""
    return module == keep or module.startswith(keep + ".")


def kept_by(members: Mapping[K, Sequence[str]], known: Sequence[str], keep: Sequence[str], covers_nothing: str) -> set[K]:
    """Keys of ``members`` (key -> module names) whose modules a ``keep`` name covers (:func:`covers`).

    A name that is no module in ``known`` is refused with a close-match hint; one that covers no key with
    ``covers_nothing`` (a message; ``{name}`` is the keep name)."""
    out: set[K] = set()
    for k in keep:
        if k not in known:
            raise EdgemmError(f"prune keep names no module {k!r}{close_match_hint(k, known)}; give names from model.named_modules() "
                              f"(reports/pruning.json lists each channel group's modules)")
        hit = {key for key, ms in members.items() if any(covers(k, m) for m in ms)}
        if not hit:
            raise EdgemmError(covers_nothing.format(name=k))
        out |= hit
    return out
