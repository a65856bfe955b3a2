"""``[quantize]``: INT8 post-training quantization settings (the budget, the calibration method, the quantizers).

Which parts stay float is the recipe's ``[precision]`` table (``PrecisionPolicy``, edgemm.stages.quantize.ptq).
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import field_validator

from ...errors import EdgemmError, close_match_hint, setting
from ...options import Options, option, options


def parse_max_drop(value) -> tuple[float | None, bool]:
    """``0.01`` -> (0.01, absolute); ``"2%"`` -> (0.02, relative); ``"none"`` -> (None, False)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off")):
        return None, False
    if isinstance(value, bool):
        raise EdgemmError(f"{setting('max_drop', repr(value))} is not a number; write 0.01 (1 point absolute), 2% (relative) or none")
    text = str(value).strip()
    try:
        if text.endswith("%"):
            v = float(text[:-1])
            if not math.isfinite(v) or not 0 <= v <= 100:
                raise EdgemmError(f"{setting('max_drop', repr(value))} is outside [0%, 100%]; a relative budget is a percentage of the reference top-1")
            return v / 100.0, True
        v = float(text)
    except ValueError as exc:
        raise EdgemmError(f"{setting('max_drop', repr(value))} is not a number; write 0.01 (1 point absolute), 2% (relative) or none") from exc
    if not math.isfinite(v) or not 0 <= v <= 1:
        raise EdgemmError(f"{setting('max_drop', str(v))} is outside [0, 1]; top-1 drops are fractions (0.01 = 1 point)")
    return v, False


def parse_mae_increase(value) -> tuple[float | None, bool]:
    """``0.05`` -> (0.05, absolute: in the regression targets' units); ``"5%"`` -> (0.05, relative to the reference MAE);
    ``None`` / ``"none"`` -> (None, False)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off")):
        return None, False
    if isinstance(value, bool):
        raise EdgemmError(f"{setting('max_mae_increase', repr(value))} is not a number; write 0.05 (in the targets' units), 5% or none")
    text = str(value).strip()
    try:
        v = float(text[:-1] if text.endswith("%") else text)
    except ValueError as exc:
        raise EdgemmError(f"{setting('max_mae_increase', repr(value))} is not a number; write 0.05 (in the targets' units), 5% or none") from exc
    if not math.isfinite(v) or v < 0:
        raise EdgemmError(f"{setting('max_mae_increase', repr(value))} must be a finite number >= 0; write 0.05, 5% or none")
    return (v / 100.0, True) if text.endswith("%") else (v, False)


def _non_finite(value) -> bool:
    try:
        return not math.isfinite(float(str(value).strip().rstrip("%")))
    except ValueError:
        return False


def _budget_value(value, parse, allowed: str):
    """A budget as the options hold it: an absolute number, "N%" (relative) or None; ``parse`` reads the user's form."""
    try:
        amount, relative = parse(value)
    except EdgemmError as exc:
        raise ValueError(("" if not _non_finite(value) else "expected a finite number: ") + allowed) from exc
    if amount is None:
        return None
    return f"{amount * 100:g}%" if relative else amount


@options("quantize")
class QuantizeOptions(Options):
    method: Literal["minmax", "percentile", "entropy"] = option(
        "minmax", flag="--calib-method", help="activation range calibration (default: the recipe's, else minmax)")
    max_drop: float | str | None = option(
        0.01, flag="--max-drop", metavar="DROP",
        help="accuracy budget for --int8 on the evaluation split: 0.01 = 1 point top-1 absolute (default), 2% relative, "
             "none = report only; sensitive parts stay float until it holds")
    quantizer: str | dict[str, str] = option(
        {}, flag="--quantizer", metavar="Q|TARGET=Q,...",
        help="the quantizer of every target (Q) or per target (TARGET=Q,...); default: each backend's own")
    speed_guard: bool = option(
        True, flag="--speed-guard", help="CPU targets: keep ops float where INT8 is slower, so INT8 is not slower than fp32 "
                                          "at batch 1 (default on; --no-speed-guard turns it off)")

    calibration_limit: int | None = option(
        None, ge=1, flag="--calib-limit", metavar="N", help="calibrate on the first N calibration samples only (default: all)")
    max_mae_increase: float | str | None = option(
        None, flag="--max-mae-increase", metavar="DELTA",
        help="budget of regression heads for --int8: the MAE increase allowed, in the targets' units (0.05) or relative "
             "to the reference MAE (5%); default: --max-drop's value, read as an MAE increase")
    strict: bool = option(
        False, flag="--int8-strict",
        help="fail the export (exit 2) when a target's INT8 cannot reach its parity floor; default: leave that target's "
             "INT8 out of the bundle with one warning and keep every other artifact")
    search_minutes: float = option(
        5.0, ge=0, flag="--int8-search-minutes", metavar="MIN",
        help="time cap per target of the INT8 speed-guard and accuracy searches, in minutes (default 5); the first "
             "candidate is always built and checked, and what the cap skipped is reported")

    @field_validator("max_drop", mode="before")
    @classmethod
    def _budget(cls, value):
        return _budget_value(value, parse_max_drop, "write 0.01 (1 point absolute, in [0, 1]), 2% (relative, in [0%, 100%]) or none")

    @field_validator("max_mae_increase", mode="before")
    @classmethod
    def _mae_budget(cls, value):
        return _budget_value(value, parse_mae_increase, "write 0.05 (MAE increase in the targets' units, >= 0), 5% (relative) or none")

    @field_validator("quantizer", mode="before")
    @classmethod
    def _pairs(cls, value):
        if isinstance(value, str) and "=" in value:
            pairs = {}
            for part in value.split(","):
                if not part.strip():
                    continue
                target, sep, name = part.partition("=")
                if not sep or not target.strip() or not name.strip():
                    raise ValueError(f"cannot read {part.strip()!r}; write a quantizer name, or TARGET=NAME pairs like openvino=nncf")
                pairs[target.strip()] = name.strip()
            return pairs
        return value.strip() if isinstance(value, str) else value

    @field_validator("quantizer")
    @classmethod
    def _known(cls, value):
        from ...backends.registry import target_names
        from ..quantize.registry import quantizer_names

        targets, names = target_names(), quantizer_names()
        chosen = value.items() if isinstance(value, dict) else [(None, value)]
        for target, q in chosen:
            if target is not None and target not in targets:
                raise ValueError(f"unknown target {target!r}{close_match_hint(target, targets)}; targets: {', '.join(targets)}")
            if q not in names:
                raise ValueError(f"unknown quantizer {q!r}{close_match_hint(q, names)}; use one of {', '.join(names)}")
        return value

    def quantizers(self, targets) -> dict[str, str]:
        """target -> quantizer name chosen here (one name for every target, or the pairs)."""
        if isinstance(self.quantizer, str):
            return {t: self.quantizer for t in targets}
        return dict(self.quantizer)

    @property
    def budget(self) -> tuple[float | None, bool]:
        """(max_drop as a fraction or None, whether it is relative to the reference top-1)."""
        return parse_max_drop(self.max_drop)

    @property
    def regression_budget(self) -> tuple[float, bool] | None:
        """(the MAE increase allowed, whether relative to the reference MAE), or None: regression heads take max_drop."""
        delta, relative = parse_mae_increase(self.max_mae_increase)
        return None if delta is None else (delta, relative)


QuantizeConfig = QuantizeOptions  # the name recipes used before the options seam
