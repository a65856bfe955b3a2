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

``torch.export.load`` unpickles (weights and constants with ``weights_only=False``), so the
torch backend loads a bundle's ``.pt2`` only with opt-in; ``load_torch_program`` is the one
place that does it. Library log output during such loads is captured and shown with ``-v``.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import math
import re
import warnings
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import BundleError, RecipeError, UntrustedCode, one_line
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



# --------------------------------------------------------------------------- unpickling


@contextlib.contextmanager
def captured_library_logs(*names: str) -> Iterator[list[str]]:
    """Capture what ``names`` loggers (and Python warnings) print during a library call.

    Libraries such as torch log their own tracebacks before raising; the CLI's contract is one line,
    so the records are kept and re-logged on edgemm's logger at DEBUG (shown with ``-v``).
    """
    from .log import logger

    lines: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                text = record.getMessage()
            except Exception:  # a library's malformed log call must not hide the real error
                text = str(record.msg)
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            lines.append(f"{record.name}: {text}")

    handler = _Keep(logging.DEBUG)
    saved = []
    for lg in _loggers_under(names):
        saved.append((lg, lg.propagate, list(lg.handlers)))
        lg.handlers = [handler]
        lg.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield lines
    finally:
        for lg, propagate, handlers in saved:
            lg.handlers = handlers
            lg.propagate = propagate
        lines.extend(f"warning: {w.category.__name__}: {w.message}" for w in caught)
        for line in lines:
            logger.debug("%s", line)


def _loggers_under(names) -> list[logging.Logger]:
    """The loggers ``names`` and every existing logger below them that prints by itself.

    torch gives some of its loggers (``torch.export``, ``torch._dynamo`` ...) their own stderr handler with
    ``propagate = False``: capturing ``torch`` alone lets their records (a whole traceback) through.
    """
    found = [logging.getLogger(n) for n in names]
    for key, lg in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and any(key.startswith(n + ".") for n in names) and (lg.handlers or not lg.propagate):
            found.append(lg)
    return found


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


# --------------------------------------------------------------------------- verify / bench building blocks


def torch_reference_plan(bundle, trust_code: bool | None = None) -> dict:
    """How to get the fp32 torch reference of ``bundle`` safely (for verify and the bench baseline).

    Returns ``{"kind": "factory" | "program" | None, "factory", "checkpoint", "program", "reason"}``:

    - ``factory``: the manifest's ``model.factory`` is trusted (the zoo, or opt-in) -> the user's original
      ``nn.Module`` (zoo factories read their checkpoint weights-only); its checkpoint must exist and
      match ``model.sha256`` when the manifest records one;
    - ``program``: the bundle's ``reference/model.pt2`` (torch fp32 artifact), with opt-in only;
    - ``None``: neither; ``reason`` says why in one line (naming the opt-in), for the report.
    """
    from .files import sha256_file

    model = bundle.manifest.get("model", {})
    factory, checkpoint = model.get("factory"), model.get("checkpoint")
    refs = [a for a in bundle.artifacts if a.backend == "torch" and a.precision == "fp32"]
    program = bundle.file(refs[0].path) if refs else None
    trusted = code_allowed(bundle.root, trust_code)
    reasons = []
    if isinstance(factory, str) and factory and (trusted or is_trusted_factory(factory)):
        ok = True
        if checkpoint:
            ck = Path(checkpoint)
            if not ck.is_file():
                ok = False
                reasons.append(f"the original model's checkpoint {ck} is not on this machine")
            elif model.get("sha256") and sha256_file(ck) != model["sha256"]:
                ok = False
                reasons.append(f"the checkpoint {ck} differs from the one the bundle was exported from (sha256)")
        if ok:
            return {"kind": "factory", "factory": factory, "checkpoint": checkpoint, "program": None, "reason": None}
    elif factory:
        reasons.append(f"its factory {factory!r} is code outside the edgemm zoo")
    if program is not None and trusted:
        return {"kind": "program", "factory": None, "checkpoint": None, "program": str(program), "reason": None}
    if program is not None:
        reasons.append(f"{refs[0].path} would be unpickled (torch.export.load)")
    elif not refs:
        reasons.append("the bundle has no torch fp32 artifact")
    why = "; ".join(reasons) or "nothing to build it from"
    hint = f"; rerun with {OPT_IN} to use it" if program is not None or factory else ""
    return {"kind": None, "factory": None, "checkpoint": None, "program": None,
            "reason": one_line(f"torch reference not loaded: {why}{hint}")}


def torch_reference_module(plan: dict, trust_code: bool | None = None):
    """The ``nn.Module`` (or ExportedProgram module) for a plan from ``torch_reference_plan``; None if none."""
    if plan["kind"] == "factory":
        fn = resolve_factory(plan["factory"], trust_code=trust_code)
        return fn(**({"checkpoint": plan["checkpoint"]} if plan["checkpoint"] else {}))
    if plan["kind"] == "program":
        return load_torch_program(plan["program"], trust_code=True).module()
    return None


def nonfinite_breach(ref, out) -> str | None:
    """Why ``out`` (an artifact's output) cannot match ``ref``: non-finite values the reference does not have.

    Verify must treat this as a parity breach: an all-inf output has a NaN cosine, and ``nan < floor``
    is False, so a plain threshold check passes it.
    """
    import numpy as np

    a, b = np.asarray(ref), np.asarray(out)
    bad_out = ~np.isfinite(b) if b.dtype.kind in "fc" else np.zeros(b.shape, bool)
    bad_ref = ~np.isfinite(a) if a.dtype.kind in "fc" else np.zeros(a.shape, bool)
    if a.shape == b.shape:
        extra = bad_out & ~bad_ref
    else:
        extra = bad_out
    n = int(extra.sum())
    if n:
        return f"{n} of {b.size} values are inf/NaN where the reference is finite"
    return None


def finite_or_none(x: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (``json.dumps`` writes ``NaN``, which is not JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_or_none(v) for v in x]
    return x


__all__ = [
    "OPT_IN", "allow_code", "code_allowed", "trust_root", "untrust_root", "untrusted", "zoo_module_file",
    "is_trusted_factory", "resolve_factory", "captured_library_logs", "load_torch_program", "load_checkpoint",
    "torch_reference_plan", "torch_reference_module", "nonfinite_breach", "finite_or_none",
]


# --------------------------------------------------------------------------- no phoning home


def disable_telemetry() -> None:
    """Stop OpenVINO / NNCF usage telemetry for this process (idempotent; call before importing nncf).

    Why: ``openvino_telemetry`` sends each event from a *forked* ``multiprocessing.Process`` (one per event,
    60+ during one NNCF quantization) that calls ``urlopen`` and is joined with a timeout. Those children sit in
    edgemm's process group, so a terminal's Ctrl-C hits them too: each prints its own KeyboardInterrupt
    traceback (the user's one line is buried), and on a machine whose network hangs instead of failing
    (typical on an edge box) the export waits for them instead of stopping. An edge deployment tool makes
    no network calls the user did not ask for.
    """
    import os
    import sys

    os.environ.setdefault("NNCF_CI", "1")  # read once, when nncf.telemetry is imported: telemetry -> stub
    wrapper = sys.modules.get("nncf.telemetry.wrapper")
    if wrapper is not None and hasattr(wrapper, "NNCFTelemetryStub"):
        wrapper.telemetry = wrapper.NNCFTelemetryStub()  # nncf was imported before us
    try:
        from openvino_telemetry.backend import backend_ga4  # used by openvino.convert_model and nncf
    except Exception:  # not installed (or broken): nothing will be sent
        return
    backend = getattr(backend_ga4, "GA4Backend", None)
    if backend is not None and not getattr(backend.send, "_edgemm_off", False):
        def send(self, message):  # noqa: ARG001 - drop every event, fork nothing
            return None

        send._edgemm_off = True  # type: ignore[attr-defined]
        backend.send = send
