"""``edgemm`` command line: a thin layer over the Python API.

Each verb is a module in ``edgemm/cli/commands/`` with ``ORDER`` and ``register(subparsers)``;
adding a verb touches no file here. Every failure ends in one line on stderr:

- user errors (EdgemmError) and OS errors (disk full, permission denied): ``edgemm: error: ...``, exit 2;
- Ctrl-C: ``edgemm: interrupted``, exit 130, from the first line of ``main`` on (parser building and the
  imports of a command included; ``python -m edgemm`` also covers importing this module);
- anything else is a bug in edgemm: ``edgemm: internal error: ...`` with a hint, exit 1
  (``-v`` prints the traceback, and the library traceback behind a user error).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from ..errors import EdgemmError, command_line, one_line, os_error_line  # noqa: F401  (os_error_line: re-exported)
from ..version import __version__
from ..log import set_verbosity
from . import commands



class _Parser(argparse.ArgumentParser):
    """Usage errors in one line too (argparse prints the whole usage block first)."""

    def error(self, message: str):
        self.exit(2, one_line(f"edgemm: error: {message} (see `{self.prog} --help`)") + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgemm", description="Take trained multimodal PyTorch models to the edge: export, verify, run.")
    p.add_argument("--version", action="version", version=f"edgemm {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug output (exporter logs, tracebacks behind errors)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    mods = [importlib.import_module(f"{commands.__name__}.{m.name}") for m in pkgutil.iter_modules(commands.__path__)]
    for mod in sorted(mods, key=lambda m: getattr(m, "ORDER", 50)):
        if hasattr(mod, "register"):  # a verb; commands/flags.py holds the flag helpers they share
            mod.register(sub)
    return p


def _launched() -> bool:
    """Under a launcher (torchrun): WORLD_SIZE > 1. Read from the environment, nothing imported."""
    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")


def _error(line: str) -> None:
    if _launched():  # one line for the whole run: the rank that claims it says it (edgemm.distributed.outcome)
        from ..distributed.outcome import line_to_say

        line = line_to_say(line)
        if line is None:
            return
    print(one_line(line), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    rc = _main(argv)
    if _launched():  # every rank of a launched run exits with rank 0's code (edgemm.distributed.outcome.agree)
        from ..distributed.outcome import finish

        rc = finish(rc)
    return rc


def _main(argv: list[str] | None) -> int:
    args = None
    try:  # everything, parser building and imports included: a Ctrl-C at any moment is one line
        from ..plugins import plugins_deferred
        from ..telemetry import disable_telemetry

        with plugins_deferred():  # --help and --version never run a plugin's code
            parser = build_parser()
        args = parser.parse_args(argv)
        set_verbosity(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
        if _launched():  # ranks != 0 of a launched run print nothing: rank 0 speaks for the run
            from ..distributed import launched_rank

            if launched_rank() > 0:
                import warnings

                set_verbosity(logging.DEBUG if args.verbose else logging.ERROR)
                sys.stdout = open(os.devnull, "w")
                if not args.verbose:  # library warnings too: rank 0 shows them once
                    warnings.simplefilter("ignore")
        disable_telemetry()  # no forked telemetry senders in our process group (Ctrl-C, offline boxes)
        with command_line():  # errors name flags (--max-drop), not the API's keywords (max_drop=)
            return args.func(args)
    except KeyboardInterrupt:
        _error("edgemm: interrupted")
        return 130
    except EdgemmError as exc:
        if _verbose(args, argv) and exc.__cause__ is not None:
            import traceback

            traceback.print_exception(exc.__cause__, file=sys.stderr)
        _error(f"edgemm: error: {exc}")
        return 2
    except BrokenPipeError:  # `edgemm info B | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as exc:  # disk full, permission denied, read-only file system ...
        if _verbose(args, argv):
            import traceback

            traceback.print_exc(file=sys.stderr)
        _error(f"edgemm: error: {os_error_line(exc)}")
        return 2
    except Exception as exc:  # a bug in edgemm (or a library it calls): say so, in one line
        verbose = _verbose(args, argv)
        if verbose:
            import traceback

            traceback.print_exc(file=sys.stderr)
        hint = "this is a bug in edgemm; please report it with the traceback above" if verbose else \
            "this is a bug in edgemm; rerun with -v for the traceback and please report it"
        _error(f"edgemm: internal error: {type(exc).__name__}: {exc} ({hint})")
        return 1


def _verbose(args, argv: list[str] | None) -> bool:
    """``-v`` as parsed, or as typed when the failure came before parsing finished."""
    if args is not None:
        return bool(getattr(args, "verbose", False))
    words = sys.argv[1:] if argv is None else argv
    return "-v" in words or "--verbose" in words


if __name__ == "__main__":
    sys.exit(main())
