"""Error types.

``EdgemmError`` is a *user* error: bad input, missing data, unavailable backend. The CLI prints
its message as one line and exits with code 2. Anything else is a bug: the CLI prints
``edgemm: internal error: ...`` (the traceback with ``-v``) and exits with code 1.
"""
from __future__ import annotations

import contextvars
import difflib
import errno
import re
from typing import Iterable

_LINE_BREAKS = re.compile(r"\s*[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+\s*")


def one_line(text: object) -> str:
    """``text`` with every line break (and the blanks around it) replaced by one space; other spacing kept.

    Messages often quote library errors, which span lines; the CLI's contract is one line per error.
    """
    return _LINE_BREAKS.sub(" ", str(text)).strip()


class EdgemmError(Exception):
    """A user-facing error: one line naming the problem and the fix."""

    def __init__(self, message: str):
        # The CLI prints str(err) verbatim after "edgemm: error: ", so it must not span lines.
        super().__init__(one_line(message))


class SpecError(EdgemmError):
    """Feeds or data that do not match the model's IOSpec."""


class RecipeError(EdgemmError):
    """A recipe (TOML) that cannot be used as written."""


class ConfigError(RecipeError):
    """A setting (recipe key, CLI flag, API argument) whose value its options class does not allow."""


class BundleError(EdgemmError):
    """A bundle directory that is missing, corrupt or tampered with."""


class UntrustedCode(BundleError):
    """A bundle asks edgemm to import or unpickle code, and the user has not opted in (--trust-code)."""


class BackendUnavailable(EdgemmError):
    """A backend whose library is not installed or whose device is absent."""


class UnsupportedFeature(EdgemmError):
    """A request edgemm cannot serve (yet) on this backend/artifact."""


class ParityError(EdgemmError):
    """An artifact that does not compute what the reference model computes."""


class UserCodeError(EdgemmError):
    """An exception raised inside the user's own code (a recipe's model factory, a training generator, a plugin):
    the message names the callable and the exception; the CLI shows its traceback with ``-v``."""


def close_match_hint(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when ``word`` looks like a typo of one of ``choices``."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


OS_FIX = {
    errno.ENOSPC: "free some disk space and run it again",
    errno.EDQUOT: "free some space (disk quota exceeded) and run it again",
    errno.EACCES: "check the permissions of that path or choose another one",
    errno.EPERM: "check the permissions of that path or choose another one",
    errno.EROFS: "that file system is read-only; choose a writable path",
    errno.ENOENT: "check that the path exists",
    errno.ENOTDIR: "a part of that path is a file, not a folder; fix the path",
    errno.EISDIR: "that path is a folder; give a file path",
    errno.EMFILE: "too many open files; raise `ulimit -n` and run it again",
}


def os_error_line(exc: OSError) -> str:
    """``No space left on device: 'build/x/onnx/model.onnx'; free some disk space ...`` (one line)."""
    what = exc.strerror or type(exc).__name__
    where = " -> ".join(repr(str(f)) for f in (exc.filename, exc.filename2) if f is not None)
    fix = OS_FIX.get(exc.errno or -1, "fix the path or the file system and run it again")
    return one_line(f"{what}{': ' + where if where else ''}; {fix}")


# --------------------------------------------------------------------------- naming a setting the way the user gave it

_SURFACE: contextvars.ContextVar[str] = contextvars.ContextVar("edgemm_surface", default="api")


# keyword -> CLI flag where the flag is not ``--`` + the keyword with dashes
FLAGS = {"calibration": "--calib", "evaluation": "--eval", "output": "-o", "targets": "--target", "trust_code": "--trust-code",
         "calibration_method": "--calib-method"}


class command_line:
    """Inside ``with command_line():`` errors name CLI flags (``--max-drop``); elsewhere API keywords (``max_drop=``).
    The CLI enters it around a command; the library's messages call :func:`setting` for the name."""

    def __enter__(self):
        self._token = _SURFACE.set("cli")
        return self

    def __exit__(self, *exc) -> None:
        _SURFACE.reset(self._token)


def on_command_line() -> bool:
    return _SURFACE.get() == "cli"


def setting(keyword: str, value: str | None = None) -> str:
    """A setting as the user wrote it: ``--max-drop 0.02`` on the command line, ``max_drop=0.02`` in Python
    (``value`` omitted: ``--max-drop`` / ``max_drop=``)."""
    if on_command_line():
        flag = FLAGS.get(keyword, "--" + keyword.replace("_", "-"))
        return flag if value is None else f"{flag} {value}"
    return f"{keyword}=" if value is None else f"{keyword}={value}"


def switch(keyword: str) -> str:
    """An on/off setting as the user turns it on: ``--qat`` on the command line, ``qat=True`` in Python."""
    return FLAGS.get(keyword, "--" + keyword.replace("_", "-")) if on_command_line() else f"{keyword}=True"
