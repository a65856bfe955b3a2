"""Find backends: the built-in folders under edgemm/backends/ plus the ``edgemm.backends`` entry points.

Adding a backend touches no file here: drop a folder with ``BACKEND = MyBackend()`` in its
``__init__`` or register an entry point in another package.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from ..errors import EdgemmError, close_match_hint
from .base import Availability, Backend


class BrokenPlugin(Backend):
    """An ``edgemm.backends`` entry point that fails to import: listed as unavailable with the reason."""

    formats = ()
    precisions = ()
    order = 99

    def __init__(self, name: str, value: str, exc: BaseException):
        self.name = name  # type: ignore[misc]
        self.description = f"plugin {value} (fails to import)"  # type: ignore[misc]
        self._why = f"the plugin package fails to import ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"

    def availability(self) -> Availability:
        return Availability(False, reason=self._why, install="fix or uninstall the package that provides it")

    def create_runner(self, path, spec, options=None):
        self.require()


@lru_cache(maxsize=1)
def _discover() -> dict[str, Backend]:
    found: dict[str, Backend] = {}
    pkg = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.ispkg:
            mod = importlib.import_module(f"{__package__}.{info.name}")
            backend = getattr(mod, "BACKEND", None)
            if isinstance(backend, Backend):
                found[backend.name] = backend
    from importlib.metadata import entry_points

    for ep in entry_points(group="edgemm.backends"):
        try:
            backend = ep.load()
        except Exception as exc:  # a broken third-party package: listed as unavailable, it must not break edgemm
            found.setdefault(ep.name, BrokenPlugin(ep.name, ep.value, exc))
            continue
        backend = backend() if isinstance(backend, type) else backend
        if not isinstance(backend, Backend):
            raise EdgemmError(f"entry point {ep.name} ({ep.value}) is not an edgemm Backend; fix or uninstall that package")
        found.setdefault(backend.name, backend)
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


def all_backends() -> dict[str, Backend]:
    return dict(_discover())


def backend_names() -> tuple[str, ...]:
    return tuple(_discover())


def reference_backend() -> Backend:
    """The backend that runs the user's original model (PyTorch eager): accuracy reference and baseline."""
    refs = [b for b in _discover().values() if b.reference]
    if not refs:
        raise EdgemmError("no reference backend is registered (edgemm's torch backend folder is missing); reinstall edgemm")
    return refs[0]


def target_names() -> tuple[str, ...]:
    """Backends an export can target (every backend but the reference)."""
    return tuple(n for n, b in _discover().items() if not b.reference)


def get_backend(name: str) -> Backend:
    backends = _discover()
    if name not in backends:
        raise EdgemmError(f"unknown backend {name!r}{close_match_hint(name, backends)}; known: {', '.join(backends)}")
    return backends[name]
