"""Find backends: the built-in folders under edgemm/backends/ plus the ``edgemm.backends`` entry points.

Adding a backend touches no file here: drop a folder with ``BACKEND = MyBackend()`` in its
``__init__`` or register an entry point in another package.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from ..errors import EdgemmError, close_match_hint
from .base import Backend

ORDER = ("torch", "onnxruntime", "openvino", "tensorrt")  # display order; others follow alphabetically


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
        backend = ep.load()
        backend = backend() if isinstance(backend, type) else backend
        if not isinstance(backend, Backend):
            raise EdgemmError(f"entry point {ep.name} ({ep.value}) is not an edgemm Backend; fix or uninstall that package")
        found.setdefault(backend.name, backend)
    return dict(sorted(found.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER), kv[0])))


def all_backends() -> dict[str, Backend]:
    return dict(_discover())


def get_backend(name: str) -> Backend:
    backends = _discover()
    if name not in backends:
        raise EdgemmError(f"unknown backend {name!r}{close_match_hint(name, backends)}; known: {', '.join(backends)}")
    return backends[name]
