"""``PruneConfig`` (what the pruning stage runs: branch ratios + the settings of ``PruneOptions``) and
``parse_prune`` (any form of a pruning request -> ``PruneConfig``). The options seam of ``[prune]``, the
``--prune*`` / ``--finetune-*`` flags and ``edgemm.export(prune=..., prune_options=...)`` is
``edgemm.stages.options.prune.PruneOptions``.
"""
from __future__ import annotations

from typing import Literal, Mapping, Sequence

from pydantic import field_validator

from ...errors import EdgemmError, close_match_hint
from ...options import build_options, option, options
from ..options.prune import (ALL, CRITERIA, FUSION, HEAD_MODES, SETTINGS, SPARSITY, PruneOptions, PruneSettings,  # noqa: F401
                             Ratios, check_ratio, parse_ratios, ratio_form)


@options("prune")
class PruneConfig(PruneSettings):
    """A pruning request as the pruning stage runs it. ``ratios``: branch name -> fraction of channels removed
    (``"*"``: every branch and the fusion; named branches only themselves)."""

    ratios: dict[str, float] = option({}, cli=False, help="branch -> fraction of channels removed ('*': the whole model)")
    sparsity: Literal["2:4"] | None = option(None, cli=False, help="2:4 semi-structured sparsity")

    @field_validator("ratios", mode="before")
    @classmethod
    def _check_ratios(cls, value):
        if isinstance(value, Mapping):
            try:
                return {str(k): check_ratio(str(k), v) for k, v in value.items()}
            except EdgemmError as exc:
                raise ValueError(str(exc)) from None
        return value

    def __post_init__(self):
        if not self.ratios and self.sparsity is None:
            raise EdgemmError("empty prune request; give a ratio (0.5), per-branch ratios (image=0.5,audio=0.3) or 2:4")

    @classmethod
    def from_options(cls, opts: PruneOptions) -> "PruneConfig":
        settings = {f: getattr(opts, f) for f in SETTINGS}
        ratio = opts.ratio
        sparsity = opts.sparsity or (ratio if ratio == "2:4" else None)
        return cls(ratios=dict(ratio) if isinstance(ratio, dict) else {}, sparsity=sparsity, **settings)

    @property
    def structured(self) -> bool:
        return bool(self.ratios)

    def ratio_for(self, branch: str) -> float:
        """Fraction to remove from ``branch`` (an input name or ``"fusion"``); 0.0 = leave intact."""
        return self.ratios.get(branch, self.ratios.get(ALL, 0.0))

    def check_branches(self, branches: Sequence[str]) -> None:
        """Refuse ratio keys that name no branch of the model (with a close-match hint)."""
        known = [*branches, FUSION]
        for key in self.ratios:
            if key != ALL and key not in known:
                raise EdgemmError(
                    f"unknown prune branch {key!r}{close_match_hint(key, known)}; this model's branches are: {', '.join(known)}"
                )


TABLE_KEYS = ("ratio", "sparsity") + SETTINGS


def parse_prune(value, branches: Sequence[str] | None = None, **overrides) -> PruneConfig:
    """``0.5`` | ``"image=0.5,audio=0.3"`` | ``"2:4"`` | ``{"image": 0.5}`` | a recipe ``[prune]`` table | ``PruneOptions``
    -> PruneConfig.

    ``branches`` (the model's input names) checks the branch keys; ``overrides`` set other fields
    (``criterion="taylor"``, ``epochs=3``, ...). Every value goes through ``PruneOptions`` (edgemm.options).
    """
    if isinstance(value, PruneConfig):
        cfg = build_options(PruneConfig, overrides, "[prune]", base=value) if overrides else value
    else:
        if isinstance(value, PruneOptions):
            table = {f: getattr(value, f) for f in TABLE_KEYS}
        elif isinstance(value, Mapping) and any(k in TABLE_KEYS for k in value):
            table = dict(value)  # a [prune] table
        else:
            table = {"ratio": value}
        cfg = PruneConfig.from_options(build_options(PruneOptions, {**table, **overrides}, "[prune]"))
    if branches is not None:
        cfg.check_branches(branches)
    return cfg
