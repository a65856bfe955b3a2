"""Reading torch archives under the trust policy: ``.pt2`` programs (unpickled, so only with opt-in or for a
file the user named) and checkpoints (torch's weights-only loader unless the user opts in).

``load_torch_program`` is the one place edgemm calls ``torch.export.load``. torch's own log output during
such loads is captured (``edgemm.liblogs``) so that a corrupt file is one line; ``-v`` shows the rest.
"""
from __future__ import annotations

from pathlib import Path

from .errors import BundleError, RecipeError, one_line
from .liblogs import captured_library_logs
from .trust import code_allowed, untrusted


def load_torch_program(path: str | Path, trust_code: bool | None = None, what: str | None = None):
    """``torch.export.load(path)`` if the user trusts it; a corrupt archive is one BundleError line.

    ``torch.export.load`` unpickles the archive's weights and constants (``weights_only=False``), which
    can run code; a bundle's program is therefore loaded only with opt-in (or when this process wrote it).
    A ``.pt2`` the user names on the command line is theirs: pass ``trust_code=True``.
    """
    from .lazy import lazy_import

    path = Path(path)
    what = what or f"torch program {path}"
    if not code_allowed(path, trust_code):
        raise untrusted(f"loading {what}", "would unpickle it (torch.export.load), which can run code")
    if not path.is_file():
        raise BundleError(f"{what} is missing; re-export the bundle")
    torch = lazy_import("torch")
    with captured_library_logs("torch"):
        try:
            return torch.export.load(str(path))
        except Exception as exc:  # torch raises many types for a bad archive
            raise BundleError(f"cannot load {what} ({type(exc).__name__}: {one_line(exc)[:300]}); "
                              "it is corrupt or from another torch version: re-export it") from exc


def load_checkpoint(path: str | Path, trust_code: bool | None = None, map_location: str = "cpu"):
    """``torch.load`` with the weights-only loader (tensors and plain containers, no code).

    A checkpoint that needs code to load is refused in one line naming the opt-in; with opt-in it is
    loaded with the full unpickler.
    """
    from .lazy import lazy_import

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"checkpoint {path} not found; fix the path")
    torch = lazy_import("torch")
    full = code_allowed(path, trust_code)
    with captured_library_logs("torch"):
        try:
            return torch.load(path, map_location=map_location, weights_only=not full)
        except Exception as exc:
            if not full and _needs_code(exc):
                raise untrusted(f"checkpoint {path}", "holds pickled objects beyond tensors; loading it would run code") from exc
            raise RecipeError(f"cannot read checkpoint {path} ({type(exc).__name__}: {one_line(exc)[:300]}); "
                              "it is corrupt or not a torch checkpoint") from exc


def _needs_code(exc: BaseException) -> bool:
    import pickle

    return isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc) or "Weights only load failed" in str(exc)


__all__ = ["load_torch_program", "load_checkpoint"]
