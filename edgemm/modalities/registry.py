"""Find modalities: the built-in ones (``edgemm/modalities/<kind>/``) plus the ``edgemm.modalities`` entry points.

Built-ins are imported on first use; plugins are loaded once (under ``edgemm.plugins``' protection: a plugin
that fails to import, raises or is not a ``Modality`` is listed by ``broken_modalities`` with its reason and
never breaks a bundle that does not use it). A plugin cannot take a built-in kind's name.
"""
from __future__ import annotations

import importlib
from functools import lru_cache

from ..errors import SpecError, close_match_hint
from .base import Modality

BUILTIN_MODULES = ("image", "audio", "text", "video", "tensor")


@lru_cache(maxsize=1)
def _builtins() -> dict[str, Modality]:
    found: dict[str, Modality] = {}
    for mod in BUILTIN_MODULES:
        modality = importlib.import_module(f"{__package__}.{mod}").MODALITY
        found[modality.name] = modality
    return found


def _check_modality(obj) -> str | None:
    """Why an entry point's object is not a usable modality (None: it is)."""
    from ..plugins import check_name

    if not isinstance(obj, Modality):
        return f"it is a {type(obj).__name__}, not an edgemm Modality (subclass edgemm.modalities.base.Modality)"
    check_name(obj.name, "modality name")
    return None


def _discover() -> tuple[dict[str, Modality], dict[str, str]]:
    from ..plugins import plugins_enabled

    if not plugins_enabled():  # nothing loaded, nothing cached (see edgemm.plugins.plugins_deferred)
        return _builtins(), {}
    return _with_plugins()


@lru_cache(maxsize=1)
def _with_plugins() -> tuple[dict[str, Modality], dict[str, str]]:
    from ..plugins import named_plugins

    return named_plugins("edgemm.modalities", _check_modality, _builtins(), "modality")


def all_modalities() -> dict[str, Modality]:
    """Every usable modality by name (built-ins first)."""
    return dict(_discover()[0])


def broken_modalities() -> dict[str, str]:
    """Modality plugins that failed to load -> why."""
    return dict(_discover()[1])


def get_modality(name: str) -> Modality:
    """The modality called ``name``; an unknown one is one SpecError line (naming a broken plugin's reason)."""
    found, broken = _discover()
    if name in found:
        return found[name]
    if name in broken:
        raise SpecError(f"modality {name!r} comes from a plugin that is broken: {broken[name]}; fix or uninstall it")
    raise SpecError(f"unknown modality {name!r}{close_match_hint(str(name), found)}; use one of {', '.join(found)} "
                    "(more come from packages with an edgemm.modalities entry point)")


def modality_of_params(pre) -> Modality | None:
    """The modality whose params class ``pre`` is an instance of."""
    for m in _discover()[0].values():
        if m.params is not None and isinstance(pre, m.params):
            return m
    return None
