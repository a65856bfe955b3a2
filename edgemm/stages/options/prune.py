"""``[prune]``: the options of a pruning request (``PruneOptions``) and the forms a ratio is written in.

Forms of ``ratio`` (recipe ``[prune] ratio``, ``--prune``, ``edgemm.export(prune=...)``):

- ``0.5`` / ``"0.5"``: remove 50 % of the channels of the whole model: every modality branch and
  the fusion part (the token width where the branches meet, attention heads, MLP widths);
  model inputs and outputs stay;
- ``"image=0.5,audio=0.3"`` / ``{"image": 0.5, "audio": 0.3}``: only the named branches (branch =
  model input name); the fusion part stays intact unless ``fusion=`` is named too;
- ``"2:4"``: 2:4 semi-structured sparsity (TensorRT sparse weights; no CPU speedup).

What the pruning stage runs is ``edgemm.stages.prune.PruneConfig`` (``parse_prune``).
"""
from __future__ import annotations

from typing import Literal, Mapping, Union

from pydantic import field_validator

from ...errors import EdgemmError
from ...options import Options, option, options

FUSION = "fusion"
ALL = "*"  # key of a global ratio: the whole model (every branch and the fusion)
CRITERIA = ("magnitude", "taylor")
SPARSITY = ("2:4",)
HEAD_MODES = ("remove", "narrow")
Ratios = Union[float, Mapping[str, float]]


def check_ratio(name: str, value) -> float:
    try:
        r = float(value)
    except (TypeError, ValueError) as exc:
        raise EdgemmError(f"prune ratio for {name!r} is {value!r}, not a number; give a fraction in (0, 1) like 0.5") from exc
    if not 0.0 < r < 1.0:
        raise EdgemmError(f"prune ratio for {name!r} is {r:g}, outside (0, 1); give the fraction of channels to remove, e.g. 0.5")
    return r


@options("prune")
class PruneSettings(Options):
    """How a pruning request is carried out (every [prune] key but ``ratio`` / ``sparsity``)."""

    criterion: Literal["magnitude", "taylor"] = option(
        "magnitude", flag="--prune-criterion", help="channel importance: L2 magnitude or first-order Taylor (needs labels) (default magnitude)")
    # attention: "remove" whole heads (4 x 24 -> 2 x 24 at 0.5; then narrow the rest to the ratio), or
    # "narrow" every head and keep their number (4 x 24 -> 4 x 12); see heads.py
    heads: Literal["remove", "narrow"] = option(
        "remove", flag="--prune-heads", help="attention: remove whole heads (4x24 -> 2x24 at 0.5, then narrow the rest to the ratio) "
                                             "or narrow every head and keep their number (4x24 -> 4x12) (default remove)")
    # keep: module names (as in model.named_modules()) whose output channels stay: every channel group
    # that holds one of them gets ratio 0 (e.g. a stem conv that carries most of a branch's accuracy);
    # with 2:4 sparsity, the layers they name (or hold) also stay dense
    keep: tuple[str, ...] = option(
        (), flag="--prune-keep", metavar="MODULE,...",
        help="module names whose output channels stay unpruned (their whole channel group keeps its width), e.g. "
             "image.body.0.0,fuse.0; with 2:4 the named layers (and those under them) stay dense; reports/pruning.json lists "
             "each group's modules (default: the recipe's [prune] keep)")
    epochs: int | None = option(
        None, ge=0, flag="--finetune-epochs", metavar="N",
        help="pruning fine-tune epochs in total, all iterative steps (default 40, fewer on a large training split: at most "
             "144,000 samples seen, e.g. 15 epochs of avnet's 9,600 pairs; 0: no fine-tuning)")
    finetune_minutes: float | None = option(
        None, ge=0, flag="--finetune-minutes", metavar="M", help="wall-clock budget of the whole pruning fine-tune (default: epochs decide)")
    iterative_steps: int = option(1, ge=1, help="prune -> fine-tune rounds (1: one-shot; feature distillation recovers faster "
                                                "than 3 rounds did)")
    lr: float = option(2e-3, gt=0, help="fine-tune learning rate (default 0.002)")
    batch_size: int = option(32, ge=1, help="fine-tune batch size (default 32)")
    distill_temperature: float = option(4.0, gt=0, help="distillation temperature T (default 4)")
    distill_weight: float = option(0.7, ge=0, le=1, help="loss = w * T^2 * KL(teacher_T || student_T) + (1 - w) * CE(labels) "
                                                         "(default 0.7)")
    feature_weight: float = option(1.0, ge=0, help="also match the branch outputs (where branches meet the fusion) to the "
                                                   "teacher's; 0: off (default 1)")
    max_drop: float | None = option(
        0.015, ge=0, lt=1, flag="--prune-max-drop", metavar="DROP",
        help="pruning's own accuracy budget: top-1 drop vs the original on every head after fine-tuning (default 0.015 = "
             "1.5 points; none = report only); the bundle is written either way, exit 2 when missed")
    mixup: bool = option(True, help="also match the teacher on blends of two training samples (outputs and branch features)")
    recombine: bool = option(False, help="also distill on inputs re-paired across samples (teacher-labelled; training split only)")
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
    shift: float = option(0.125, ge=0, lt=0.5, help="translate every training batch at random by up to this fraction of the "
                                                     "input's extent (image: both spatial axes, audio: time); 0: off (default 0.125)")
    bn_recalibrate: bool = option(True, help="re-estimate BatchNorm statistics on the clean training inputs after the last epoch")
    seed: int = option(0, ge=0, help="seed of the fine-tune (batch order, mixup, shifts)")

    @field_validator("keep", mode="before")
    @classmethod
    def _keep_names(cls, value):
        if isinstance(value, str):  # "a,b" from the CLI / API
            return tuple(k.strip() for k in value.split(",") if k.strip())
        if isinstance(value, (list, tuple)) and all(isinstance(k, str) for k in value):
            return tuple(k.strip() for k in value if k.strip())
        return value

    @field_validator("max_drop", mode="before")
    @classmethod
    def _no_budget(cls, value):
        return None if isinstance(value, str) and value.strip().lower() in ("none", "off") else value


SETTINGS = tuple(PruneSettings.__pydantic_fields__)  # field names of the settings, in order


@options("prune")
class PruneOptions(PruneSettings):
    """The ``[prune]`` table, the ``--prune*`` / ``--finetune-*`` flags and ``edgemm.export(prune=..., prune_options=...)``.

    ``ratio`` is kept in one form whatever the surface wrote: branch -> fraction (``{"*": 0.5}`` for a
    plain number), or ``"2:4"``."""

    ratio: Union[dict[str, float], Literal["2:4"], None] = option(
        None, flag="--prune", metavar="RATIO",
        help="structured pruning: 0.5 (the whole model: both branches, the token width where they meet, attention heads "
             "and MLP widths; inputs and outputs stay), image=0.5,audio=0.3 (only the named branches; add fusion=R for the "
             "part where they meet) or 2:4 (semi-structured sparsity for TensorRT sparse weights; no CPU speedup). Channels "
             "are removed for real, then the model is fine-tuned with distillation from the original on the training split "
             "(the recipe's [data] training: a sample file or a [data.training] generator; else the calibration data); the "
             "original stays the accuracy reference (default: the recipe's [prune])")
    sparsity: Literal["2:4"] | None = option(
        None, flag="--prune-sparsity", help="2:4 semi-structured sparsity (TensorRT sparse weights; weights zeroed, shapes "
                                            "kept), alone or on top of a channel ratio")

    @field_validator("ratio", mode="before")
    @classmethod
    def _ratios(cls, value):
        try:
            return ratio_form(value)
        except EdgemmError as exc:
            raise ValueError(str(exc)) from None


def parse_ratios(text: str) -> dict[str, float]:
    text = text.strip()
    if "=" not in text:
        return {ALL: check_ratio("all branches", text)}
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
        out[key] = check_ratio(key, value.strip())
    return out


def ratio_form(value):
    """A ratio as any surface writes it -> branch -> fraction, ``"2:4"`` or None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise EdgemmError(f"prune value {value!r} is not a ratio; give a fraction like 0.5, image=0.5,audio=0.3 or 2:4")
    if isinstance(value, (int, float)):
        return {ALL: check_ratio("all branches", value)}
    if isinstance(value, str) and value.strip() in SPARSITY:
        return value.strip()
    if isinstance(value, str):
        return parse_ratios(value)
    if isinstance(value, Mapping):
        return {str(k): check_ratio(str(k), v) for k, v in value.items()}
    raise EdgemmError(f"prune value of type {type(value).__name__} is not understood; give 0.5, 'image=0.5,audio=0.3', '2:4' or a dict")


