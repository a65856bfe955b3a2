"""The optional libraries families need (transformers, timm, safetensors), imported on first use.

PyPI's torchvision wheel for Linux is a CUDA build; beside a CPU torch it fails to import
(``operator torchvision::nms does not exist``), and transformers' vision models and timm import it. Such a
failure is one line saying what to do: edgemm itself never needs torchvision.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from ..errors import BackendUnavailable, EdgemmError, one_line

HF_INSTALL = "pip install 'edgemm[hf]'"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # torch's own index: torchvision built for the CPU torch


def cpu_torchvision_command() -> str:
    """``pip install torchvision==0.28.* --index-url ...``: the torchvision release that matches the installed torch
    (torch 2.N pairs with torchvision 0.(N+15)), read from the installed metadata without importing torch."""
    from importlib import metadata

    try:
        major, minor = (int(p) for p in metadata.version("torch").split("+")[0].split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        major, minor = 0, 0
    release = f"0.{minor + 15}.*" if major == 2 else "<the release matching your torch>"
    return f"pip install 'torchvision=={release}' --index-url {CPU_INDEX}"


class TorchvisionBroken(EdgemmError):
    """torchvision is installed but cannot be imported beside this torch (or is missing where timm needs it)."""


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def torchvision_cause(exc: BaseException) -> str | None:
    """The torchvision failure behind ``exc`` in one short phrase, or None when torchvision is not to blame."""
    for e in _chain(exc):
        name = getattr(e, "name", None)
        if isinstance(e, ModuleNotFoundError) and name and name.split(".")[0] == "torchvision":
            return "torchvision is not installed"
        text = str(e)
        if "torchvision::" in text or ("torchvision" in text.lower() and isinstance(e, (RuntimeError, OSError, AttributeError))):
            return f"torchvision fails to import ({type(e).__name__}: {one_line(text)[:160]})"
        tb = e.__traceback__
        while tb is not None:
            if "torchvision" in tb.tb_frame.f_code.co_filename.replace("\\", "/").split("/"):
                return f"torchvision fails to import ({type(e).__name__}: {one_line(text)[:160]})"
            tb = tb.tb_next
    return None


def torchvision_error(cause: str, needed_by: str, removable: bool) -> TorchvisionBroken:
    """The one line for a torchvision failure: what broke and the two ways out."""
    if removable:
        fix = (f"edgemm does not need torchvision: `pip uninstall torchvision`, or install the CPU build matching your torch: "
               f"{cpu_torchvision_command()}")
    else:
        fix = (f"{needed_by} needs a torchvision built for your torch: install the CPU build matching your torch: "
               f"{cpu_torchvision_command()} (edgemm itself does not need torchvision)")
    return TorchvisionBroken(f"cannot import {needed_by}: {cause}; {fix}")


def import_optional(module: str, needed_by: str, *, torchvision_removable: bool = True) -> ModuleType:
    """``importlib.import_module(module)``; a missing package says how to install it, a torchvision failure says
    how to get around it (``torchvision_removable``: the importer works without torchvision, e.g. transformers)."""
    try:
        return importlib.import_module(module)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken optional library is the user's environment: one line
        cause = torchvision_cause(exc)
        if cause is not None:
            raise torchvision_error(cause, needed_by, torchvision_removable) from exc
        if isinstance(exc, ImportError):
            top = module.split(".")[0]
            raise BackendUnavailable(f"python package {top!r} is not installed (needed for {needed_by}): {one_line(exc)[:200]}; "
                                     f"install it with: {HF_INSTALL}") from exc
        raise EdgemmError(f"cannot import {module} (needed for {needed_by}): {type(exc).__name__}: {one_line(exc)[:300]}; "
                          f"reinstall it: {HF_INSTALL}") from exc


def transformers_attr(name: str, needed_by: str):
    """``transformers.<name>`` (a model class); its lazy import failing because of torchvision is one line too."""
    transformers = import_optional("transformers", needed_by)
    try:
        return getattr(transformers, name)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers wraps its model modules' import errors
        cause = torchvision_cause(exc)
        if cause is not None:
            raise torchvision_error(cause, needed_by, removable=True) from exc
        raise EdgemmError(f"cannot import transformers.{name} (needed for {needed_by}): {type(exc).__name__}: "
                          f"{one_line(exc)[:300]}; check the transformers install ({HF_INSTALL})") from exc


def import_timm(needed_by: str = "timm") -> ModuleType:
    """``import timm``: timm imports torchvision unconditionally, so uninstalling it is no way out there."""
    if importlib.util.find_spec("timm") is None:
        raise BackendUnavailable(f"python package 'timm' is not installed (needed for {needed_by}); install a torchvision "
                                 f"built for your torch first ({cpu_torchvision_command()}), then: pip install timm "
                                 "(PyPI's torchvision for Linux is a CUDA build that fails beside a CPU torch)")
    return import_optional("timm", needed_by, torchvision_removable=False)
