"""The backend contract: a Backend makes Runners for the artifacts it can run.

A backend is one folder under ``edgemm/backends/`` whose ``__init__`` exposes ``BACKEND`` (an
instance of a Backend subclass), or a third-party package registered under the
``edgemm.backends`` entry-point group. Importing the folder must not import the heavy library:
``availability()`` and ``create_runner()`` import it lazily.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping

import numpy as np

from ..errors import BackendUnavailable
from ..iospec import IOSpec


@dataclass(frozen=True)
class Availability:
    available: bool
    version: str | None = None
    reason: str | None = None  # why it is unavailable
    install: str | None = None  # the command that makes it available
    devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunnerOptions:
    threads: int | None = None  # intra-op threads; None: the library's default
    device: str = "cpu"
    precision: str = "fp32"  # the artifact's precision: fp32 artifacts must compute in fp32


class Runner(ABC):
    """Runs one artifact. ``infer(feeds) -> {output name: array}`` in graph output order."""

    backend: ClassVar[str] = ""

    def __init__(self, spec: IOSpec):
        self.spec = spec
        self.last_latency_ms: float | None = None

    @abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Raw outputs, in the order of ``spec.outputs``."""

    def infer(self, feeds: Mapping[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        if check:
            feeds = self.spec.check_feeds(feeds)
        t0 = time.perf_counter()
        outs = self._infer(dict(feeds))
        self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        return dict(zip(self.spec.output_names, outs))

    def close(self) -> None:
        """Release the session/engine."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Backend(ABC):
    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]  # artifact formats create_runner() accepts
    precisions: ClassVar[tuple[str, ...]]
    description: ClassVar[str] = ""

    @abstractmethod
    def availability(self) -> Availability:
        """Whether the library (and device) is present, its version, or why not + install hint."""

    def require(self) -> Availability:
        av = self.availability()
        if not av.available:
            hint = f"; install it with: {av.install}" if av.install else ""
            raise BackendUnavailable(f"backend {self.name!r} is unavailable: {av.reason}{hint}")
        return av

    @abstractmethod
    def create_runner(self, path: Path, spec: IOSpec, options: RunnerOptions = RunnerOptions()) -> Runner:
        """A runner for the artifact at ``path``."""

    def compile(self, onnx_path: Path, out_dir: Path, spec: IOSpec, precision: str) -> list[tuple[str, list[str], dict]]:
        """Turn an fp32 ONNX file into this backend's own artifact(s) inside ``out_dir``.

        Returns ``[(main file, [all files], toolchain versions)]`` relative to ``out_dir``. The
        default: the backend runs ONNX as it is (nothing to compile).
        """
        return []


def version_of(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
