"""``PruneConfig`` and ``parse_prune``: the CLI / recipe / API forms of a pruning request.

Forms accepted by :func:`parse_prune`:

- ``0.5`` / ``"0.5"``: remove 50 % of the channels of the whole model: every modality branch and
  the fusion part (the token width where the branches meet, attention heads, MLP widths);
  model inputs and outputs stay;
- ``"image=0.5,audio=0.3"`` / ``{"image": 0.5, "audio": 0.3}``: only the named branches (branch =
  model input name); the fusion part stays intact unless ``fusion=`` is named too;
- ``"2:4"``: 2:4 semi-structured sparsity (TensorRT sparse weights; no CPU speedup);
- a recipe ``[prune]`` table: ``{"ratio": 0.5 | {...} | "2:4", "criterion": ..., "epochs": ...}``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Mapping, Sequence, Union

from ...errors import EdgemmError, close_match_hint

FUSION = "fusion"
ALL = "*"  # key of a global ratio: the whole model (every branch and the fusion)
CRITERIA = ("magnitude", "taylor")
SPARSITY = ("2:4",)
HEAD_MODES = ("remove", "narrow")
Ratios = Union[float, Mapping[str, float]]


def _check_ratio(name: str, value) -> float:
    try:
        r = float(value)
    except (TypeError, ValueError) as exc:
        raise EdgemmError(f"prune ratio for {name!r} is {value!r}, not a number; give a fraction in (0, 1) like 0.5") from exc
    if not 0.0 < r < 1.0:
        raise EdgemmError(f"prune ratio for {name!r} is {r:g}, outside (0, 1); give the fraction of channels to remove, e.g. 0.5")
    return r


@dataclass(frozen=True)
class PruneConfig:
    """A pruning request. ``ratios``: branch name -> fraction of channels removed (``"*"``: every branch)."""

    ratios: Mapping[str, float] = field(default_factory=dict)  # "*" covers the fusion too; named branches only themselves
    criterion: str = "magnitude"  # channel importance: L2 magnitude or first-order Taylor (needs labels)
    sparsity: str | None = None  # "2:4": semi-structured sparsity for TensorRT (weights zeroed, shapes kept)
    epochs: int | None = None  # fine-tune epochs in total (all iterative steps); None: finetune_minutes decides
    finetune_minutes: float | None = None  # wall-clock budget of the whole fine-tune; None: epochs decide
    # attention: "remove" whole heads (4 x 24 -> 2 x 24 at 0.5; then narrow the rest to the ratio), or
    # "narrow" every head and keep their number (4 x 24 -> 4 x 12); see heads.py
    heads: str = "remove"
    # keep: module names (as in model.named_modules()) whose output channels stay: every channel group
    # that holds one of them gets ratio 0 (e.g. a stem conv that carries most of a branch's accuracy);
    # with 2:4 sparsity, the layers they name (or hold) also stay dense
    keep: tuple[str, ...] = ()
    iterative_steps: int = 1  # prune -> fine-tune rounds (1: one-shot; feature distillation recovers faster than 3 rounds did)
    lr: float = 2e-3
    batch_size: int = 32
    distill_temperature: float = 4.0
    distill_weight: float = 0.7  # loss = w * T^2 * KL(teacher_T || student_T) + (1 - w) * CE(labels)
    feature_weight: float = 1.0  # also match the branch outputs (where branches meet the fusion) to the teacher's; 0: off
    max_drop: float | None = 0.015  # pruning's own budget: top-1 drop vs the original on every head (None: report only)
    mixup: bool = True  # also match the teacher on blends of two training samples (outputs and branch features)
    recombine: bool = False  # also distill on inputs re-paired across samples (teacher-labelled; training split only)
    # shift: every batch translated at random by up to this fraction of the input's extent (image
    # inputs in both spatial axes, audio inputs along time), the teacher's outputs and features on the
    # shifted inputs as targets (labels stay valid); 0: off. It gives the small training split new
    # views the teacher still labels right (teacher digit top-1 on shifted training inputs: 0.985 as
    # unshifted). bn_recalibrate: after the last epoch, BatchNorm statistics are re-estimated on the
    # clean training inputs (training updated them on blended and shifted batches). avnet 50 %, 40
    # epochs, 1,200 training pairs, eval split digit top-1 (original 0.963): mixup alone 0.950 (seed 0),
    # 0.945 (seed 1); with shift 0.125 + re-estimation 0.958 / 0.955 / 0.952 (seeds 0 / 1 / 2, mean
    # 0.955, -0.8 points); re-estimation alone moves the final model by -0.7..+0.6 points (noise level).
    # See benchmarks/results/prune-accuracy-2026-11-30.json.
    shift: float = 0.125
    bn_recalibrate: bool = True
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "ratios", {str(k): _check_ratio(k, v) for k, v in dict(self.ratios).items()})
        keep = self.keep.split(",") if isinstance(self.keep, str) else self.keep
        if not isinstance(keep, (list, tuple)) or not all(isinstance(k, str) for k in keep):
            raise EdgemmError(f"prune keep is {self.keep!r}; give module names, e.g. keep = [\"image.body.0.0\", \"fuse.0\"]")
        object.__setattr__(self, "keep", tuple(k.strip() for k in keep if k.strip()))
        if self.criterion not in CRITERIA:
            raise EdgemmError(f"unknown prune criterion {self.criterion!r}{close_match_hint(self.criterion, CRITERIA)}; use one of: {', '.join(CRITERIA)}")
        if self.heads not in HEAD_MODES:
            raise EdgemmError(f"unknown prune heads mode {self.heads!r}{close_match_hint(self.heads, HEAD_MODES)}; use remove (whole heads) or narrow (every head thinner)")
        if self.sparsity is not None and self.sparsity not in SPARSITY:
            raise EdgemmError(f"unknown sparsity pattern {self.sparsity!r}; the supported one is '2:4' (TensorRT sparse weights)")
        if not self.ratios and self.sparsity is None:
            raise EdgemmError("empty prune request; give a ratio (0.5), per-branch ratios (image=0.5,audio=0.3) or 2:4")
        if self.iterative_steps < 1:
            raise EdgemmError(f"iterative_steps is {self.iterative_steps}; it must be >= 1")
        for name in ("epochs", "finetune_minutes"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise EdgemmError(f"{name} is {v}; it must be >= 0 (0: no fine-tuning)")
        if self.max_drop is not None and not 0 <= self.max_drop < 1:
            raise EdgemmError(f"prune max_drop is {self.max_drop}; give a top-1 drop in [0, 1) like 0.015 (1.5 points), or none")
        if not 0 <= self.shift < 0.5:
            raise EdgemmError(f"prune shift is {self.shift}; give the largest translation as a fraction of the input's extent in [0, 0.5), e.g. 0.125 (0: off)")
        if self.lr <= 0 or self.batch_size < 1 or self.distill_temperature <= 0 or not 0 <= self.distill_weight <= 1 or self.feature_weight < 0:
            raise EdgemmError("prune lr, batch_size and distill_temperature must be > 0, distill_weight in [0, 1] and feature_weight >= 0; check the [prune] settings")

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


def _parse_ratios(text: str) -> dict[str, float]:
    text = text.strip()
    if "=" not in text:
        return {ALL: _check_ratio("all branches", text)}
    out: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise EdgemmError(f"cannot read prune ratio {part.strip()!r}; write BRANCH=RATIO pairs like image=0.5,audio=0.3")
        key = key.strip()
        if key in out:
            raise EdgemmError(f"prune branch {key!r} given twice in {text!r}; give each branch once")
        out[key] = _check_ratio(key, value.strip())
    return out


def _budget(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise EdgemmError(f"prune max_drop {text!r} is not a number; give a top-1 drop like 0.015 (1.5 points) or none") from exc


def parse_prune(value, branches: Sequence[str] | None = None, **overrides) -> PruneConfig:
    """``0.5`` | ``"image=0.5,audio=0.3"`` | ``"2:4"`` | ``{"image": 0.5}`` | a recipe ``[prune]`` table -> PruneConfig.

    ``branches`` (the model's input names) checks the branch keys; ``overrides`` set other fields
    (``criterion="taylor"``, ``epochs=3``, ...).
    """
    known = {f.name for f in fields(PruneConfig)}
    settings: dict = {}
    if isinstance(value, PruneConfig):
        cfg = value
    else:
        if isinstance(value, Mapping) and ("ratio" in value or "sparsity" in value or set(value) & (known - {"ratios"})):
            table = dict(value)
            ratio = table.pop("ratio", None)
            for key in table:
                if key not in known:
                    raise EdgemmError(f"unknown [prune] key {key!r}{close_match_hint(key, known | {'ratio'})}; known keys: ratio, {', '.join(sorted(known - {'ratios'}))}")
            settings.update(table)
            value = ratio
        if isinstance(settings.get("max_drop"), str):
            settings["max_drop"] = _budget(settings["max_drop"])
        if value is None:
            ratios = {}
        elif isinstance(value, bool):
            raise EdgemmError(f"prune value {value!r} is not a ratio; give a fraction like 0.5, image=0.5,audio=0.3 or 2:4")
        elif isinstance(value, (int, float)):
            ratios = {ALL: _check_ratio("all branches", value)}
        elif isinstance(value, str) and value.strip() in SPARSITY:
            ratios, settings["sparsity"] = {}, value.strip()
        elif isinstance(value, str):
            ratios = _parse_ratios(value)
        elif isinstance(value, Mapping):
            ratios = {str(k): _check_ratio(str(k), v) for k, v in value.items()}
        else:
            raise EdgemmError(f"prune value of type {type(value).__name__} is not understood; give 0.5, 'image=0.5,audio=0.3', '2:4' or a dict")
        settings["ratios"] = ratios
        try:
            cfg = PruneConfig(**settings)
        except TypeError as exc:  # a wrong type in a recipe table, e.g. epochs = "three"
            raise EdgemmError(f"bad [prune] setting ({exc}); check the types of the values") from exc
    if overrides:
        if isinstance(overrides.get("max_drop"), str):
            overrides = {**overrides, "max_drop": _budget(overrides["max_drop"])}
        cfg = replace(cfg, **overrides)
    if branches is not None:
        cfg.check_branches(branches)
    return cfg
