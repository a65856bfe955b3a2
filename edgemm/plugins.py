"""Plugins from entry points, loaded so that a broken one cannot take edgemm down.

Third-party packages extend edgemm through entry-point groups (``edgemm.backends``,
``edgemm.quantizers``, ``edgemm.stages``, ``edgemm.families``, ``edgemm.modalities``). Such a package
sits in the same environment as edgemm and may be broken in any way: it fails to import, raises
while importing, calls ``sys.exit``, prints, is not what the group expects, or declares nonsense.
``load_entry_points`` loads one group and sorts each plugin into *loaded* or *broken* (with a
one-line reason), so built-ins and every command keep working and ``edgemm backends`` can say
what is wrong. Only Ctrl-C (KeyboardInterrupt) passes through: the user must be able to stop it.

While ``plugins_deferred()`` is active nothing is loaded (the CLI builds its parser under it, so
``--help`` and ``--version`` never run a plugin's code); registries must not cache what they get then.
"""
from __future__ import annotations

import contextlib
import io
import re
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator

from .errors import one_line

GROUPS = ("edgemm.backends", "edgemm.quantizers", "edgemm.stages", "edgemm.families", "edgemm.modalities")
PLUGIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # names end up in paths, flags and manifests
FIX = "fix or uninstall the package that provides it"

_DEFERRED: ContextVar[bool] = ContextVar("edgemm_plugins_deferred", default=False)


@dataclass(frozen=True)
class BrokenPluginInfo:
    """An entry point that could not be used: its name, its ``module:attr`` value and why, in one line."""

    name: str
    value: str
    reason: str
    group: str = ""
    dist: str | None = None  # the distribution that declares it, when known

    def line(self) -> str:
        where = f" from {self.dist}" if self.dist else ""
        return one_line(f"plugin {self.name} ({self.value}{where}) is broken: {self.reason}; {FIX}")


class PluginRejected(Exception):
    """Raised by a kind check (or ``make``): the object is not what its group takes (the message says why)."""


@contextlib.contextmanager
def plugins_deferred() -> Iterator[None]:
    """Within the block ``load_entry_points`` loads nothing (returns two empty dicts)."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def plugins_enabled() -> bool:
    """False inside ``plugins_deferred()``: a registry must then use its built-ins only, and not cache that."""
    return not _DEFERRED.get()


def describe_exception(exc: BaseException) -> str:
    """``ValueError: bad thing`` in one line (at most 300 characters), or what a ``sys.exit`` call passed."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    text = one_line(exc)
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def load_entry_points(group: str, kind_check: Callable[[Any], str | None],
                      make: Callable[[Any], Any] | None = None) -> tuple[dict[str, Any], dict[str, BrokenPluginInfo]]:
    """Load every entry point of ``group``; ``(loaded: {name: obj}, broken: {name: BrokenPluginInfo})``.

    ``make(obj)`` (optional) turns what the entry point names into the object to register (e.g. instantiates
    a class); ``kind_check(obj)`` returns None when the object is what the group takes, else the reason (or
    raises ``PluginRejected``). Both run under the same protection as the import: any exception or
    ``sys.exit`` marks the plugin broken. A second entry point with a name already taken is broken too.
    Whatever a plugin prints meanwhile is kept off stdout (it would corrupt ``--json`` output) and logged
    at debug level, like each broken plugin's traceback.
    """
    if not plugins_enabled():
        return {}, {}
    from .log import logger

    eps, broken = _entry_points(group)
    loaded: dict[str, Any] = {}
    for ep, dist in eps:
        name, value = ep.name, ep.value
        if name in loaded or name in broken:
            broken.setdefault(f"{name} ({value})", BrokenPluginInfo(
                name, value, f"another plugin already registered the name {name!r} in {group}", group, dist))
            continue
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                obj = _attempt("importing it", ep.load)
                if make is not None:
                    obj = _attempt("creating it", make, obj)
                reason = _attempt("checking it", kind_check, obj)
                if reason is not None:
                    raise _Failed(str(reason))
        except _Failed as failed:
            info = BrokenPluginInfo(name, value, one_line(failed), group, dist)
            broken[name] = info
            logger.debug("%s", info.line(), exc_info=failed.__cause__)
        else:
            loaded[name] = obj
        finally:
            if out.getvalue().strip():
                logger.debug("plugin %s (%s) printed while loading: %s", name, value, one_line(out.getvalue())[:500])
    return loaded, broken


def named_plugins(group: str, kind_check: Callable[[Any], str | None], builtins: dict[str, Any], kind: str,
                  plugins_first: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """The objects of ``group``'s entry points (made with :func:`instantiate`, checked by ``kind_check``) merged with
    ``builtins`` by their ``name`` attribute -> (usable by name, broken entry point -> why). A plugin whose name a
    built-in or an earlier plugin holds is listed as broken; ``plugins_first`` puts plugins before the built-ins (the
    order in which they are asked)."""
    loaded, broken_info = load_entry_points(group, kind_check, make=instantiate)
    broken = {n: b.reason for n, b in broken_info.items()}
    plugins: dict[str, Any] = {}
    for name, obj in loaded.items():
        if obj.name in builtins or obj.name in plugins:
            broken[name] = f"its {kind} name {obj.name!r} is taken by another {kind}"
            continue
        plugins[obj.name] = obj
    return ({**plugins, **builtins} if plugins_first else {**builtins, **plugins}), broken


def instantiate(obj: Any) -> Any:
    """A ``make`` for ``load_entry_points``: an entry point may name a class or an instance; a class is instantiated."""
    return obj() if isinstance(obj, type) else obj


def _attempt(doing: str, fn: Callable, *args):
    try:
        return fn(*args)
    except PluginRejected as exc:
        raise _Failed(str(exc)) from exc
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of third-party code is the plugin's own
        raise _Failed(f"{doing} {_verb(exc)}") from exc


class _Failed(Exception):
    pass


def _verb(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return describe_exception(exc)
    if isinstance(exc, ImportError):
        return f"fails ({describe_exception(exc)})"
    return f"raised {describe_exception(exc)}"


def _entry_points(group: str):
    """``([(EntryPoint, dist name)], broken)`` for ``group``, one distribution at a time.

    ``importlib.metadata.entry_points()`` raises for every group when one installed distribution has a
    malformed ``entry_points.txt``; read per distribution, only that one is affected (and reported in the
    groups its file names).
    """
    found, broken = [], {}
    for dist_name, eps, error, text in _distribution_entry_points():
        if error is not None:
            if f"[{group}]" in (text or ""):
                key = f"{dist_name or '?'} (entry_points.txt)"
                broken[key] = BrokenPluginInfo(key, "entry_points.txt", f"its entry_points.txt cannot be read ({error})",
                                               group, dist_name)
            continue
        found.extend((ep, dist_name) for ep in eps if ep.group == group)
    return found, broken


@lru_cache(maxsize=1)
def _distribution_entry_points() -> tuple:
    """Every installed distribution's entry points, read once per process (first one of a name wins, as pip/importlib do)."""
    from importlib import metadata

    rows, seen = [], set()
    for dist in metadata.distributions():
        name = None
        try:
            name = dist.metadata["Name"]
            key = re.sub(r"[-_.]+", "-", (name or "")).lower()
            if key and key in seen:
                continue
            seen.add(key)
            text = dist.read_text("entry_points.txt")
            if not text:
                continue
            rows.append((name, tuple(dist.entry_points), None, None))
        except Exception as exc:  # noqa: BLE001 - a broken distribution must not hide the others
            try:
                text = dist.read_text("entry_points.txt")
            except Exception:  # noqa: BLE001
                text = None
            rows.append((name, (), describe_exception(exc), text))
    return tuple(rows)


def entry_point_values(group: str) -> dict[str, str]:
    """``{entry point name: "module:attr"}`` of ``group``, read from the installed metadata without loading any code."""
    eps, _ = _entry_points(group)
    out: dict[str, str] = {}
    for ep, _dist in eps:
        out.setdefault(ep.name, ep.value)
    return out


def check_name(name: Any, what: str, taken: dict[str, str] | None = None) -> str:
    """A plugin-declared ``name``: a short string usable in paths and flags, not one of ``taken`` ({name: whose})."""
    if not isinstance(name, str) or not PLUGIN_NAME.match(name):
        raise PluginRejected(f"its {what} {name!r} is not a name (letters, digits, '.', '_', '-'; at most 64)")
    if taken and name in taken:
        raise PluginRejected(f"its {what} {name!r} is already {taken[name]}")
    return name


def check_strings(value: Any, what: str, allowed: tuple[str, ...] | None = None, empty: bool = False) -> tuple[str, ...]:
    """A declared tuple (or list) of non-empty strings, each in ``allowed`` when given."""
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise PluginRejected(f"its {what} must be a tuple of strings, got {value!r}")
    if not value and not empty:
        raise PluginRejected(f"its {what} is empty")
    for v in value:
        if not isinstance(v, str) or not v:
            raise PluginRejected(f"its {what} must be a tuple of strings, got {value!r}")
        if allowed is not None and v not in allowed:
            raise PluginRejected(f"its {what} {value!r} has {v!r}, which is none of {', '.join(allowed)}")
    return tuple(value)


def check_type(value: Any, what: str, types: tuple[type, ...], none: bool = False) -> Any:
    """``value`` is an instance of ``types`` (bools are not ints here), or None when ``none``."""
    if value is None and none:
        return value
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join(t.__name__ for t in types) + (" or None" if none else "")
        raise PluginRejected(f"its {what} must be {names}, got {value!r}")
    return value


__all__ = ["GROUPS", "BrokenPluginInfo", "PluginRejected", "load_entry_points", "entry_point_values", "instantiate", "plugins_deferred", "plugins_enabled",
           "describe_exception", "check_name", "check_strings", "check_type"]
