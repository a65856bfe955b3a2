"""`edgemm verify`: parity + accuracy of every artifact."""
from __future__ import annotations

from pathlib import Path

ORDER = 20


def cmd_verify(args) -> int:
    from ...stages.verify import verify

    result = verify(args.bundle, evaluation=args.eval, threads=args.threads)
    print(result.summary())
    print(f"reports written to {Path(args.bundle) / 'reports'}")
    return 0


def register(sub) -> None:
    v = sub.add_parser("verify", help="parity + task accuracy of every artifact vs the fp32 reference",
                       description="Re-run parity (max-abs, mean-abs, cosine per output) and top-1 per head for every artifact; "
                                   "rewrite reports/*.json. Exit 2 on a parity breach.")
    v.add_argument("bundle", metavar="BUNDLE_DIR")
    v.add_argument("--eval", default=None, metavar="NPZ", help="evaluation data (default: the one recorded at export)")
    v.add_argument("--threads", type=int, default=None)
    v.set_defaults(func=cmd_verify)
