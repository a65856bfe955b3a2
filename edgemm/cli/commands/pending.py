"""Verbs whose capability is not in this version yet: they exist, explain, and exit 2."""
from __future__ import annotations

import argparse

from ... import __version__
from ...errors import UnsupportedFeature

ORDER = 90
PENDING = {
    "compile": ("engine compilation (TensorRT/OpenVINO INT8)", "compile a bundle for a target"),
    "run": ("the camera + microphone streaming runtime", "run a bundle on live streams"),
}


def _waiting(capability: str):
    def run(args) -> int:
        raise UnsupportedFeature(f"`edgemm {args.command}` ({capability}) is not in edgemm {__version__} yet; "
                                 "today: export, verify, info, backends, bench, run")
    return run


def register(sub) -> None:
    for name, (cap, text) in PENDING.items():
        if name in sub.choices:  # a real implementation registered first
            continue
        c = sub.add_parser(name, help=f"{text} (coming: {cap})", description=f"{text}. Not in this version yet: {cap}.")
        c.add_argument("args", nargs=argparse.REMAINDER)
        c.set_defaults(func=_waiting(cap))
