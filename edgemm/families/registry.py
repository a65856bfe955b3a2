"""Find model families: the built-in ones (``edgemm/families/<name>/``) plus the ``edgemm.families`` entry points.

Listing families imports only the family modules themselves, never the libraries their models come from
(transformers, timm). A plugin that fails to load is listed as broken with its reason and never breaks an
export of a model it would not have recognised anyway. Plugins are asked first, so that a third-party family
can take over a kind of model a built-in one knows.
"""
from __future__ import annotations

import importlib
from functools import lru_cache

from ..errors import EdgemmError
from .base import Family

BUILTIN_MODULES = ("hf_clip", "hf_wav2vec2", "hf_whisper", "timm_image")


def _builtins() -> dict[str, Family]:
    found: dict[str, Family] = {}
    for mod in BUILTIN_MODULES:
        family = importlib.import_module(f"{__package__}.{mod}").FAMILY
        found[family.name] = family
    return found


def _check_family(obj) -> str | None:
    """Why an entry point's object is not a usable family (None: it is)."""
    if not isinstance(obj, Family):
        return f"it is a {type(obj).__name__}, not an edgemm Family (subclass edgemm.families.base.Family)"
    if not isinstance(obj.name, str) or not obj.name:
        return "its family has no name"
    return None


def _discover() -> tuple[dict[str, Family], dict[str, str]]:
    from ..plugins import plugins_enabled

    if not plugins_enabled():  # nothing loaded, nothing cached (see edgemm.plugins.plugins_deferred)
        return _builtins(), {}
    return _with_plugins()


@lru_cache(maxsize=1)
def _with_plugins() -> tuple[dict[str, Family], dict[str, str]]:
    from ..plugins import named_plugins

    return named_plugins("edgemm.families", _check_family, _builtins(), "family", plugins_first=True)


def all_families() -> dict[str, Family]:
    """Every usable family by name, plugins first (the order models are matched in)."""
    return dict(_discover()[0])


def broken_families() -> dict[str, str]:
    """Family plugins that failed to load -> why."""
    return dict(_discover()[1])


def family_for_module(obj) -> Family | None:
    """The first family that recognises a live model object (None: the generic nn.Module path)."""
    for family in _discover()[0].values():
        if _ask(family, "recognises_module", obj):
            return family
    return None


def family_for_folder(folder) -> Family | None:
    for family in _discover()[0].values():
        if _ask(family, "recognises_folder", folder):
            return family
    return None


def _ask(family: Family, method: str, arg) -> bool:
    return bool(call_family(family, method, arg))


def call_family(family: Family, method: str, *args):
    """``family.<method>(*args)``; a plugin family that raises is named in one line (a built-in's exception is a
    bug in edgemm and stays one)."""
    fn = getattr(family, method)
    if type(family).__module__.startswith(__package__ + "."):
        return fn(*args)
    try:
        return fn(*args)
    except (EdgemmError, KeyboardInterrupt):
        raise
    except Exception as exc:
        origin = f"{type(family).__module__}.{type(family).__qualname__}"
        raise EdgemmError(f"family {family.name!r} ({origin}, a plugin) raised {type(exc).__name__} in {method}: "
                          f"{' '.join(str(exc).split())[:300]}; fix or uninstall the package that provides it") from exc


def describe() -> list[str]:
    """One line per family (``name: description``), for messages that list what edgemm recognises."""
    return [f"{f.name} ({f.description})" if f.description else f.name for f in _discover()[0].values()]
