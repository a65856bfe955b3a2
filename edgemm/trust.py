"""Trust: a bundle is data, not code.

A bundle travels (built on a workstation, copied to a camera by someone else), so loading,
verifying, benchmarking and running one never imports a module the bundle names and never
unpickles anything it holds, unless the user opts in:

- CLI: ``--trust-code`` on ``verify``, ``bench`` and ``run``;
- Python: ``with edgemm.trust.allow_code(): ...`` (or ``trust_code=True`` where an API takes it).

What is trusted without opt-in:

- a factory (``module:callable``) whose module lies inside the installed edgemm package's
  ``zoo`` (located with ``importlib.util.find_spec`` *without importing it*, and only for names
  under ``edgemm.zoo``, so a same-named module in the working directory cannot impersonate it);
- a bundle this process is writing itself (``BundleWriter`` registers its staging folder: the
  export's own verification may load the torch program it has just saved);
- checkpoints read with torch's weights-only loader (tensors, no code).

This module is the policy only. Who applies it: ``edgemm.torchload`` (``.pt2`` programs, checkpoints),
``edgemm.reference`` (the torch reference of verify and bench), ``edgemm.usercode`` (importing and
calling the user's own callables once they are allowed).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import BundleError, UntrustedCode
from .usercode import import_callable

OPT_IN = "--trust-code (Python: trust_code=True or `with edgemm.trust.allow_code():`)"
ZOO_PACKAGE = "edgemm.zoo"

_ALLOW_CODE: ContextVar[bool] = ContextVar("edgemm_trust_code", default=False)
_TRUSTED_ROOTS: set[Path] = set()  # staging folders of bundles this process is writing
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ATTR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------- opt-in


@contextlib.contextmanager
def allow_code(enabled: bool = True) -> Iterator[None]:
    """Within the block, bundles may name code to import and programs to unpickle (the user trusts them).

    ``allow_code(False)`` is a no-op, so callers can write ``with allow_code(args.trust_code):``.
    The flag is per context (thread/task); worker processes get it in their job.
    """
    token = _ALLOW_CODE.set(bool(enabled) or _ALLOW_CODE.get())
    try:
        yield
    finally:
        _ALLOW_CODE.reset(token)


def code_allowed(path: str | Path | None = None, trust_code: bool | None = None) -> bool:
    """True if the user opted in (explicitly via ``trust_code``, else the ``allow_code`` context), or
    ``path`` lies inside a bundle this process is writing."""
    if trust_code:
        return True
    if trust_code is None and _ALLOW_CODE.get():
        return True
    if path is not None:
        p = _real(path)
        return any(p == r or r in p.parents for r in _TRUSTED_ROOTS)
    return False


def trust_root(path: str | Path) -> None:
    """Mark ``path`` (a staging folder this process writes) as trusted; ``untrust_root`` undoes it."""
    _TRUSTED_ROOTS.add(_real(path))


def untrust_root(path: str | Path) -> None:
    _TRUSTED_ROOTS.discard(_real(path))


def _real(path: str | Path) -> Path:
    try:
        return Path(path).resolve()
    except OSError:
        return Path(path).absolute()


def untrusted(what: str, why: str) -> UntrustedCode:
    """The one-line refusal: what the bundle asked for, why that runs code, and the opt-in."""
    return UntrustedCode(f"{what} {why}; edgemm treats a bundle as data and does not do that unless you trust "
                         f"where it came from: rerun with {OPT_IN}")


# --------------------------------------------------------------------------- factories


def _edgemm_dir() -> Path:
    return Path(__file__).resolve().parent


def zoo_module_file(module: str) -> Path | None:
    """The file of ``module`` if it is a module of the installed edgemm zoo, else None. Never imports ``module``.

    ``find_spec`` of a dotted name imports its parent packages; only names under ``edgemm.zoo`` get
    that far, and their parents (``edgemm``, ``edgemm.zoo``) are the installed package itself.
    """
    if not isinstance(module, str) or not _MODULE_NAME.match(module):
        return None
    if module != ZOO_PACKAGE and not module.startswith(ZOO_PACKAGE + "."):
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    origin = Path(spec.origin).resolve()
    root = _edgemm_dir() / "zoo"
    return origin if root in origin.parents else None


def is_trusted_factory(ref: Any) -> bool:
    """``edgemm.zoo.avnet:build`` -> True (a module of the installed edgemm zoo); anything else -> False."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        return False
    module, attr = ref.split(":")
    return bool(_ATTR_NAME.match(attr)) and not attr.startswith("_") and zoo_module_file(module) is not None


def resolve_factory(ref: str, trust_code: bool | None = None, where: str = "the bundle") -> Callable:
    """The callable ``module:attr`` names: zoo factories always, anything else only with opt-in."""
    if is_trusted_factory(ref):
        module, attr = ref.split(":")
        fn = getattr(importlib.import_module(module), attr, None)
        if not callable(fn):
            raise BundleError(f"{where} names factory {ref!r}, which the installed edgemm zoo does not have; "
                              "re-export the bundle with this edgemm version")
        return fn
    if not code_allowed(trust_code=trust_code):
        raise untrusted(f"{where} names the model factory {ref!r}", "and building the model would import and run that code")
    return import_callable(ref)


__all__ = [
    "OPT_IN", "allow_code", "code_allowed", "trust_root", "untrust_root", "untrusted", "zoo_module_file",
    "is_trusted_factory", "resolve_factory",
]
