"""Find backends: the built-in folders under edgemm/backends/ plus the ``edgemm.backends`` entry points.

Adding a backend touches no file here: drop a folder with ``BACKEND = MyBackend()`` in its
``__init__`` or register an entry point in another package. A plugin that fails in any way (import,
``sys.exit``, not a Backend, nonsense declarations, a name or folder a built-in has) is listed as
unavailable with the reason (``BrokenPlugin``); it never breaks edgemm (see ``edgemm.plugins``).
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from ..errors import EdgemmError, UserCodeError, close_match_hint
from ..plugins import (BrokenPluginInfo, PluginRejected, check_name, check_strings, check_type, describe_exception,
                       entry_point_values, load_entry_points, plugins_enabled)
from .base import Availability, Backend, Runner, RunnerOptions

GROUP = "edgemm.backends"
PRECISIONS = ("fp32", "fp16", "int8")
DEVICES = ("cpu", "gpu")
# Folders of a bundle that are not a backend's (edgemm.layout): a plugin's artifact_dir must not be one of them.
RESERVED_FOLDERS = ("onnx", "reference", "data", "reports", "graphs", "manifest.json")


class BrokenPlugin(Backend):
    """An ``edgemm.backends`` entry point that cannot be used: listed as unavailable with the reason."""

    formats = ()
    precisions = ()
    order = 99

    def __init__(self, info: BrokenPluginInfo):
        self.name = info.name  # type: ignore[misc]
        self.info = info
        self.description = f"plugin {info.value} (broken)"  # type: ignore[misc]
        self._why = f"the plugin is broken: {info.reason}"

    def availability(self) -> Availability:
        return Availability(False, reason=self._why, install="fix or uninstall the package that provides it")

    def create_runner(self, path, spec, options=None):
        self.require()


@lru_cache(maxsize=1)
def _builtins() -> dict[str, Backend]:
    found: dict[str, Backend] = {}
    pkg = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.ispkg:
            mod = importlib.import_module(f"{__package__}.{info.name}")
            backend = getattr(mod, "BACKEND", None)
            if isinstance(backend, Backend):
                found[backend.name] = backend
    return found


def make_backend(obj) -> Backend:
    """What a backend entry point names: a Backend subclass (instantiated here) or an instance."""
    if isinstance(obj, type):
        if not issubclass(obj, Backend):
            raise PluginRejected(f"it is the class {obj.__module__}.{obj.__qualname__}, not an edgemm Backend "
                                 "(subclass edgemm.backends.Backend)")
        return obj()
    return obj


def check_backend(obj, builtins: dict[str, Backend]) -> None:
    """Raise PluginRejected unless ``obj`` is a Backend whose declarations make sense beside ``builtins``."""
    if not isinstance(obj, Backend):
        raise PluginRejected(f"it is a {type(obj).__name__}, not an edgemm Backend (an instance or subclass of "
                             "edgemm.backends.Backend)")
    check_name(getattr(obj, "name", None), "name", {n: "a built-in backend's name" for n in builtins})
    check_strings(obj.formats, "formats")
    precisions = check_strings(obj.precisions, "precisions", PRECISIONS)
    check_strings(obj.export_precisions, "export_precisions", precisions, empty=True)
    if obj.device not in DEVICES:
        raise PluginRejected(f"its device {obj.device!r} is none of {', '.join(DEVICES)}")
    taken = {b.folder: f"the folder of the built-in backend {b.name!r}" for b in builtins.values()}
    taken.update({f: "a folder edgemm keeps for itself in a bundle" for f in RESERVED_FOLDERS})
    check_name(obj.folder, "artifact_dir", taken)
    check_type(obj.description, "description", (str,))
    check_type(obj.default_quantizer, "default_quantizer", (str,), none=True)
    check_type(obj.checked_by, "checked_by", (str,), none=True)
    check_type(obj.int8_symmetric_only, "int8_symmetric_only", (bool,))
    check_type(obj.load_priority, "load_priority", (int,))
    check_type(obj.order, "order", (int,))
    if obj.reference is not False:
        raise PluginRejected("it declares reference = True: only edgemm's own torch backend is the accuracy reference")
    obj.declaration()  # must not raise: `edgemm backends --json` prints it


def _guard(backend: Backend, value_of) -> None:
    """Wrap a plugin backend's ``availability`` and ``create_runner`` so that whoever calls them (``edgemm
    backends``, verify, ``edgemm.load``) gets edgemm's contract: an ``availability()`` that raises reads as
    unavailable with the reason; an exception while opening a runner is the plugin's (UserCodeError); the
    runner carries the backend's name, so breaches and errors name the backend and its plugin."""
    availability, create_runner = backend.availability, backend.create_runner
    fix = "fix or uninstall the package that provides it"

    def guarded_availability() -> Availability:
        try:
            av = availability()
        except Exception as exc:  # noqa: BLE001 - a third party's check must not break `edgemm backends`
            return Availability(False, reason=f"the plugin's availability() raised {describe_exception(exc)}", install=fix)
        if not isinstance(av, Availability):
            return Availability(False, reason=f"the plugin's availability() returned a {type(av).__name__}, not an "
                                              "Availability", install=fix)
        return av

    def guarded_create_runner(path, spec, options: RunnerOptions = RunnerOptions()) -> Runner:
        who = f"backend {backend.name!r} (plugin {value_of()})"
        try:
            runner = create_runner(path, spec, options)
        except EdgemmError:
            raise
        except Exception as exc:
            raise UserCodeError(f"opening a runner of {who} raised {describe_exception(exc)}; {fix} (traceback with -v)") from exc
        if not isinstance(runner, Runner):
            raise UserCodeError(f"{who} returned a {type(runner).__name__} from create_runner, not an edgemm Runner; {fix}")
        try:
            runner.backend = backend.name  # type: ignore[misc]
        except (AttributeError, TypeError):  # a runner with __slots__ keeps whatever it declares
            pass
        return runner

    try:
        backend.availability = guarded_availability  # type: ignore[method-assign]
        backend.create_runner = guarded_create_runner  # type: ignore[method-assign]
    except (AttributeError, TypeError):  # a backend with __slots__: its own methods are used as they are
        pass


@lru_cache(maxsize=1)
def _plugins() -> tuple[dict[str, Backend], dict[str, str]]:
    """Plugin backends by their declared name (broken ones as BrokenPlugin) and each one's entry-point value."""
    builtins = _builtins()
    loaded, broken = load_entry_points(GROUP, lambda obj: check_backend(obj, builtins), make=make_backend)
    values = entry_point_values(GROUP)
    found: dict[str, Backend] = {}
    origin: dict[str, str] = {}
    for ep_name, backend in loaded.items():
        value = values.get(ep_name, ep_name)
        if backend.name in found:
            broken[ep_name] = BrokenPluginInfo(ep_name, value, f"another plugin ({origin[backend.name]}) already registered "
                                               f"the backend name {backend.name!r}", GROUP)
            continue
        _guard(backend, lambda value=value: value)
        found[backend.name] = backend
        origin[backend.name] = value
    for key, info in broken.items():
        if key not in found and key not in builtins:
            found[key] = BrokenPlugin(info)
            origin[key] = info.value
    return found, origin


@lru_cache(maxsize=2)
def _discover(with_plugins: bool) -> dict[str, Backend]:
    found = dict(_builtins())
    if with_plugins:
        for name, backend in _plugins()[0].items():
            found.setdefault(name, backend)
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


def _backends() -> dict[str, Backend]:
    return _discover(plugins_enabled())


def all_backends() -> dict[str, Backend]:
    return dict(_backends())


def backend_names() -> tuple[str, ...]:
    return tuple(_backends())


def plugin_origin(name: str) -> str | None:
    """``package.module:Attr`` of the entry point that provides backend ``name``; None for a built-in (or unknown) one."""
    if name in _builtins() or not plugins_enabled():
        return None
    return _plugins()[1].get(name)


def reference_backend() -> Backend:
    """The backend that runs the user's original model (PyTorch eager): accuracy reference and baseline."""
    refs = [b for b in _builtins().values() if b.reference]
    if not refs:
        raise EdgemmError("no reference backend is registered (edgemm's torch backend folder is missing); reinstall edgemm")
    return refs[0]


def target_names() -> tuple[str, ...]:
    """Backends an export can target (every backend but the reference)."""
    return tuple(n for n, b in _backends().items() if not b.reference)


def get_backend(name: str) -> Backend:
    backends = _backends()
    if name not in backends:
        raise EdgemmError(f"unknown backend {name!r}{close_match_hint(name, backends)}; known: {', '.join(backends)}")
    return backends[name]
