"""``[verify]``: how closely every artifact must follow the reference (parity) and how accuracy is measured."""
from __future__ import annotations

from ...options import Options, option, options


@options("verify")
class VerifyOptions(Options):
    parity_samples: int = option(32, ge=1, help="held-out samples compared output by output (default 32)")
    batch: int = option(16, ge=1, help="batch size verify runs the artifacts at (default 16)")
    # Cosine bounds are not capped at 1: a bound above 1 is a way to force a breach (tests of the breach path).
    cosine_min: float = option(0.9999, ge=-1, help="least cosine vs the reference of fp32 artifacts (default 0.9999)")
    cosine_min_fp16: float = option(0.999, ge=-1, help="least cosine of fp16 artifacts (default 0.999)")
    cosine_min_int8: float = option(0.95, ge=-1, help="least cosine of int8 artifacts, enforced only without labelled "
                                                      "evaluation data (else the accuracy budget judges INT8; default 0.95)")
    max_abs: float | None = option(None, ge=0, help="largest absolute output difference allowed for fp32 artifacts "
                                                    "(default none: cosine only)")
    eval_limit: int | None = option(None, ge=1, help="measure accuracy on the first N evaluation samples only (default: all)")


VerifyConfig = VerifyOptions  # the name recipes and stages used before the options seam
