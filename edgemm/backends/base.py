"""The backend contract: a Backend makes Runners for the artifacts it can run.

A backend is one folder under ``edgemm/backends/`` whose ``__init__`` exposes ``BACKEND`` (an
instance of a Backend subclass), or a third-party package registered under the
``edgemm.backends`` entry-point group. Importing the folder must not import the heavy library:
``availability()`` and ``create_runner()`` import it lazily.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Mapping

import numpy as np

from ..errors import BackendUnavailable, ParityError, SpecError, UnsupportedFeature
from ..iospec import IOSpec
from ..options import Options, option_fields


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
    # Whether the backend's worker threads may busy-wait for the next run. None: the library's default
    # (faster on a quiet machine; False helps where other processes load every core:
    # benchmarks/bench_ort_spinning.py, results/e2e-spinning-*.json).
    spin: bool | None = None
    # GPU backends (TensorRT): rebuild an engine that does not match this device from its source ONNX (None: the
    # value recorded at compile time), and capture the run in a CUDA graph (None: the backend's default).
    rebuild: bool | None = None
    cuda_graph: bool | None = None
    # Many threads will call this runner at once (a server, edgemm bench --modes throughput): backends that can run
    # calls in parallel set themselves up for total throughput rather than single-call latency (OpenVINO's hint).
    throughput: bool = False
    # (OpenVINO int8) the OpenVINO version under which the export compiled this artifact for static shapes in a
    # child process (edgemm.backends.openvino.probe); None: not probed, run it on its dynamic shapes.
    static_probe: str | None = None

    @classmethod
    def for_artifact(cls, artifact, device: str, **kwargs) -> "RunnerOptions":
        """Options for running ``artifact`` (an edgemm.bundle.Artifact) on a backend whose device is ``device``:
        its precision, the device it records (``extra["device"]``, e.g. ``cuda:1``), else the backend's, and what
        the export found out about running it (``extra["runner"]``: a static-shape probe, a thread count used
        where ``kwargs`` give none)."""
        extra = artifact.extra if isinstance(artifact.extra, dict) else {}
        recorded = extra.get("device")
        probed = extra.get("runner") if isinstance(extra.get("runner"), dict) else {}  # Backend.probe_runner's answer
        if isinstance(probed.get("static_probe"), str):
            kwargs.setdefault("static_probe", probed["static_probe"])
        if isinstance(probed.get("threads"), int) and kwargs.get("threads") is None:  # the export's measured count,
            kwargs["threads"] = probed["threads"]  # unless the caller gives one (edgemm.stages.threads)
        return cls(precision=artifact.precision, device=recorded if isinstance(recorded, str) and recorded else device, **kwargs)


class Runner(ABC):
    """Runs one artifact. ``infer(feeds) -> {output name: array}`` in graph output order.

    Thread-safe by contract: ``infer`` may be called from several threads at once on one runner and returns exactly
    what serial calls return (tests/runtime/test_runner_threads.py). A backend whose library objects are not
    thread-safe (an OpenVINO infer request) gives each concurrent call its own. Before native code sees a feed, a
    runner refuses what would crash it (an empty batch) with one SpecError line and copies arrays the library
    cannot read in place. ``last_latency_ms`` is the latest call's, from any thread."""

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
        elif any(getattr(v, "size", 1) == 0 for v in feeds.values()):  # unchecked feeds still never reach native code empty
            raise SpecError("a feed has a zero-size axis; the batch must be >= 1 (pass at least one sample)")
        t0 = time.perf_counter()
        outs = self._infer(dict(feeds))
        self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        names = self.spec.output_names
        if len(outs) != len(names):  # zip would drop outputs silently
            cls = type(self)
            plugin = None if cls.__module__.startswith("edgemm.") else f"{cls.__module__}:{cls.__qualname__}"
            who = f"backend {self.backend or cls.__qualname__!r}" + (f" (plugin {plugin})" if plugin else "")
            what = (f"{len(outs)} of the {len(names)} outputs ({', '.join(names)}): no {', '.join(map(repr, names[len(outs):]))}"
                    if len(outs) < len(names) else f"{len(outs)} outputs, the IOSpec names {len(names)} ({', '.join(names)})")
            fix = "fix or uninstall that plugin" if plugin else "re-export the bundle (the artifact does not match it)"
            raise ParityError(f"parity breach: {who} returned {what}; {fix}")
        return dict(zip(names, outs))

    def close(self) -> None:
        """Release the session/engine."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Compiled:
    """What ``Backend.compile`` made: the main file and every file of the artifact (relative to its out_dir)."""

    main: str
    files: tuple[str, ...]
    toolchain: dict
    format: str
    extra: dict = field(default_factory=dict)


class Backend(ABC):
    """What a backend is (declared) and what it does (availability, runners, compile).

    Declarations the pipeline, the bundle loader and the benchmark read instead of backend names:
    ``formats`` it runs; ``precisions``; ``device`` ("cpu" | "gpu"; the speed guard measures CPU
    targets on this machine); ``artifact_dir`` (its folder in a bundle); ``default_quantizer``
    (a name in the quantizer registry; None: no INT8); ``int8_symmetric_only`` (TensorRT: int8
    activations with zero-point 0); ``export_precisions`` (precisions ``compile`` makes from the
    fp32 ONNX at export; empty: the backend runs the ONNX file itself, or builds from it on its
    device later); ``checked_by`` (a backend that can run this one's ONNX artifacts on this
    machine when this one cannot, e.g. TensorRT's Q/DQ model in ONNX Runtime); ``reference``
    (the PyTorch eager backend: the accuracy reference and benchmark baseline);
    ``load_priority`` (lower is preferred by ``edgemm.load`` when no latency report says better);
    ``order`` (display order in ``edgemm backends``); ``options`` (its options class, an
    ``edgemm.options.Options`` subclass of section ``compile.<name>``: the recipe's ``[compile.<name>]``
    table, the ``--<name>-*`` flags of ``edgemm export`` / ``edgemm compile`` and ``options=`` of the
    Python API; ``compile`` receives an instance of it).
    """

    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]  # artifact formats create_runner() accepts
    precisions: ClassVar[tuple[str, ...]]
    description: ClassVar[str] = ""
    device: ClassVar[str] = "cpu"
    artifact_dir: ClassVar[str] = ""  # default: the backend's name
    default_quantizer: ClassVar[str | None] = None
    int8_symmetric_only: ClassVar[bool] = False
    export_precisions: ClassVar[tuple[str, ...]] = ()
    checked_by: ClassVar[str | None] = None
    reference: ClassVar[bool] = False
    load_priority: ClassVar[int] = 50
    order: ClassVar[int] = 50
    options: ClassVar[type[Options] | None] = None
    # The backend converts the torch model itself (``compile_module``; LiteRT through litert-torch) instead of
    # compiling the fp32 ONNX: the compile stage hands it the deployed module, and its INT8 comes from its own
    # converter (a quantizer with works_on == "module").
    converts_module: ClassVar[bool] = False

    @property
    def folder(self) -> str:
        return self.artifact_dir or self.name

    def runs(self, fmt: str) -> bool:
        return fmt in self.formats

    def declaration(self) -> dict:
        """The declarations as plain data (``edgemm backends --json``, docs)."""
        return {"formats": list(self.formats), "precisions": list(self.precisions), "device": self.device,
                "artifact_dir": self.folder, "default_quantizer": self.default_quantizer,
                "int8_symmetric_only": self.int8_symmetric_only, "export_precisions": list(self.export_precisions),
                "checked_by": self.checked_by, "reference": self.reference,
                "options": [f.name for f in option_fields(self.options)] if self.options is not None else []}

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

    def probe_runner(self, path: Path, spec: IOSpec, precision: str) -> dict:
        """RunnerOptions fields this backend can run the new artifact at ``path`` with, found out at export (e.g. in
        a child process) and recorded in the artifact (``extra["runner"]``); {}: the defaults."""
        return {}

    def runner_for_module(self, module, spec: IOSpec, options: RunnerOptions = RunnerOptions()) -> Runner:
        """A runner for a live in-memory model (only the reference backend has one)."""
        raise UnsupportedFeature(f"backend {self.name!r} runs artifact files, not live modules")

    def compile(self, source: Path, out_dir: Path, spec: IOSpec, precision: str, *,
                source_precision: str = "fp32", options: Options | None = None) -> list[Compiled]:
        """Turn an ONNX file (fp32, or an int8 Q/DQ model when ``source_precision`` is int8) into this
        backend's own artifact(s) of ``precision`` inside ``out_dir``. ``options``: an instance of
        ``self.options`` (None: its defaults). The default: nothing to compile."""
        raise UnsupportedFeature(f"backend {self.name!r} has nothing to compile: it runs {', '.join(self.formats)} files as they are")

    def compile_module(self, module, args, out_dir: Path, spec: IOSpec, precision: str, *, calibration=None,
                       method: str = "minmax", float_parts=(), exclude_ops=(), options: Options | None = None) -> list[Compiled]:
        """(``converts_module`` backends) the torch ``module`` (``args``: example tensors, batch >= 2) as this backend's
        artifact of ``precision`` in ``out_dir``; int8 calibrated on ``calibration`` (tuples of tensors) with
        ``method``, ``float_parts`` (submodule names) and ``exclude_ops`` (ONNX op types) kept float."""
        raise UnsupportedFeature(f"backend {self.name!r} compiles ONNX files, not torch modules")


def version_of(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
