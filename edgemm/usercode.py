"""The user's own code: the callables a recipe names (``[model] factory``, ``[data.training] generator``).

edgemm imports them by ``package.module:callable`` and calls them; what goes wrong inside is the user's
to fix, not a bug in edgemm. ``import_callable`` returns the callable wrapped so that an exception it
raises (or a ``sys.exit`` it calls) becomes one ``UserCodeError`` line naming it:
``the training generator mypkg.mod:fn raised ValueError: ...; fix it (traceback with -v)``, with the
original exception kept as the cause (the CLI prints its traceback under ``-v``). Options the callable
does not take are a recipe error, found before the call. Whether a bundle's factory may be imported at
all is the trust policy's question (``edgemm.trust.resolve_factory``), not this module's.
"""
from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Callable

from .errors import EdgemmError, RecipeError, UserCodeError, close_match_hint, one_line


def import_callable(ref: str, what: str = "model factory") -> Callable:
    """The callable ``package.module:attr`` names, wrapped by ``attributed`` (``what`` names its role in messages)."""
    if not isinstance(ref, str) or ":" not in ref:
        raise RecipeError(f"{what} {ref!r} must look like 'package.module:function'")
    mod_name, attr = ref.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise RecipeError(f"cannot import {mod_name!r} for the {what} {ref!r} ({one_line(exc)}); is the package installed?") from exc
    except EdgemmError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the module's own top-level code failed
        raise UserCodeError(f"importing {mod_name!r} for the {what} {ref} {_outcome(exc)}; fix it "
                            "(traceback with -v)") from exc
    fn = getattr(mod, attr, None)
    if fn is None:
        names = [n for n in dir(mod) if not n.startswith("_")]
        raise RecipeError(f"{mod_name} has no {attr!r}{close_match_hint(attr, names)} (the {what} {ref})")
    if not callable(fn):
        raise RecipeError(f"the {what} {ref} is a {type(fn).__name__}, not a function or class; name a callable")
    return attributed(fn, ref, what)


def attributed(fn: Callable, ref: str, what: str) -> Callable:
    """``fn`` with its failures reported as the user's (see ``call_user_code``)."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any):
        return call_user_code(fn, ref, what, *args, **kwargs)

    return call


def call_user_code(fn: Callable, ref: str, what: str, *args: Any, **kwargs: Any):
    """``fn(*args, **kwargs)``; arguments it does not take -> RecipeError, anything it raises -> UserCodeError.

    An EdgemmError raised inside (the user's code called edgemm, which refused something) is already one
    line naming its fix and passes as it is; so does Ctrl-C.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and some C callables have none: the call itself will tell
        signature = None
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            given = ", ".join(kwargs) or "no options"
            raise RecipeError(f"the {what} {ref} cannot be called with {given} ({exc}); it takes: "
                              f"{', '.join(signature.parameters) or 'nothing'}; fix the options given to it") from exc
    try:
        return fn(*args, **kwargs)
    except EdgemmError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the user's code raised is theirs
        raise UserCodeError(f"the {what} {ref} {_outcome(exc)}; fix it (traceback with -v)") from exc


def _outcome(exc: BaseException) -> str:
    """``raised ValueError: bad value`` (one line, at most 300 characters of message) or ``called sys.exit(3)``."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = one_line(exc)
    return f"raised {type(exc).__name__}: {text[:300]}" if text else f"raised {type(exc).__name__}"


__all__ = ["import_callable", "attributed", "call_user_code"]
