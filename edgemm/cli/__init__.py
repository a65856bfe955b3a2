"""``edgemm`` command line: a thin layer over the Python API.

Each verb is a module in ``edgemm/cli/commands/`` with ``ORDER`` and ``register(subparsers)``;
adding a verb touches no file here. User errors (EdgemmError) print one line
``edgemm: error: ...`` and exit with code 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from ..version import __version__
from ..errors import EdgemmError
from ..log import set_verbosity
from . import commands


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgemm", description="Take trained multimodal PyTorch models to the edge: export, verify, run.")
    p.add_argument("--version", action="version", version=f"edgemm {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug output (exporter logs)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    mods = [importlib.import_module(f"{commands.__name__}.{m.name}") for m in pkgutil.iter_modules(commands.__path__)]
    for mod in sorted(mods, key=lambda m: getattr(m, "ORDER", 50)):
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_verbosity(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    try:
        return args.func(args)
    except EdgemmError as exc:
        if args.verbose and exc.__cause__ is not None:
            import traceback

            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"edgemm: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `edgemm info B | head`
        sys.stdout = open(__import__("os").devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("edgemm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
