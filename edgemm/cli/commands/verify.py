"""`edgemm verify`: parity + accuracy of every artifact."""
from __future__ import annotations

from pathlib import Path

ORDER = 20


def cmd_verify(args) -> int:
    from ...stages.verify import verify
    from ...trust import allow_code

    if args.threads is not None and args.threads < 1:
        from ...errors import EdgemmError

        raise EdgemmError(f"--threads {args.threads}: give a positive number of threads, e.g. --threads 4")
    with allow_code(args.trust_code):
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
    v.add_argument("--trust-code", action="store_true",
                   help="the bundle comes from a source you trust: load its torch reference program (unpickled) and "
                        "import the model factory it names (by default a bundle is data: nothing in it is imported or unpickled)")
    v.set_defaults(func=cmd_verify)
