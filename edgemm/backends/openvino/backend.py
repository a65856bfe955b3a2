from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...lazy import INSTALL_HINTS, lazy_import
from ...errors import BundleError, SpecError
from ...iospec import IOSpec
from ...log import logger
from ...telemetry import disable_telemetry
from ..base import Availability, Backend, Compiled, Runner, RunnerOptions, version_of
from .options import OpenVinoOptions, recorded_static_batch, runtime_options, store_runtime_options


_CORE = None
_CORE_LOCK = threading.Lock()


def shared_core():
    """The one ``openvino.Core`` of this process (every runner, every availability check).

    Why one: each ``Core`` loads its own CPU plugin object, and that object's constructor points the calling
    thread's alternate signal stack (``sigaltstack``) at a fresh mmap, its destructor munmaps it and puts back the
    stack it found, but only if its own is still the current one (OpenVINO 2026.4, libopenvino_intel_cpu_plugin).
    Plugins freed out of creation order therefore leave the thread on an unmapped alternate stack: core A (stack
    SA), then core B (SB, remembers SA); A freed (SB current: SA unmapped, nothing restored); B freed (restores
    SA). CPython installs its SIGINT handler with SA_ONSTACK, so the kernel cannot build the next Ctrl-C's
    signal frame and kills the process with SIGSEGV (si_code SI_KERNEL, wherever the main thread is; no
    faulthandler trace: its handler uses that stack too). A Core per runner did exactly that: the two runners
    ptq.compare_latency times side by side, and runners verified one after another, are freed oldest first, so
    every Ctrl-C after the OpenVINO INT8 step crashed. One Core, kept for the life of the process, loads the CPU
    plugin once and never frees it while edgemm runs (and saves reloading the plugin for every runner); other
    libraries' short-lived Cores (NNCF's engines) nest inside it.
    """
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            _CORE = lazy_import("openvino", "the openvino backend").Core()
        return _CORE


class _Request:
    """An infer request and, for a static-shape model, views of its own input tensors (feeds are copied in)."""

    def __init__(self, compiled, static: bool):
        self.request = compiled.create_infer_request()
        self.views = [self.request.get_input_tensor(i).data for i in range(len(compiled.inputs))] if static else None


class _Compiled:
    """One compiled model and its idle infer requests: a pool that hands each concurrent caller a request of its own.

    An infer request holds its input and output tensors: two threads on one request overwrite each other's feeds
    and outputs (silently wrong results, or OpenVINO's "Infer Request is busy"). The pool grows to the number of
    callers that ran at once and never shrinks (a request of avnet is a few hundred kB)."""

    def __init__(self, compiled, static: bool):
        self.compiled, self.static = compiled, static
        self._idle = [_Request(compiled, static)]  # one made now: a model that cannot make a request fails at load

    def acquire(self) -> _Request:
        try:
            return self._idle.pop()  # list.pop/append are atomic: no lock on the per-call path
        except IndexError:
            return _Request(self.compiled, self.static)

    def release(self, request: _Request) -> None:
        self._idle.append(request)


def _shared_feed(array: np.ndarray) -> np.ndarray:
    """An array OpenVINO may read in place: C-contiguous (it takes the buffer as dense, whatever numpy's strides
    say), aligned, writeable (``ov.Tensor(shared_memory=True)`` raises ValueError on a read-only array)."""
    if array.flags.c_contiguous and array.flags.aligned and array.flags.writeable:
        return array
    return np.array(array, order="C", copy=True)


class OpenVinoRunner(Runner):
    """Runs an IR (or ONNX) file on OpenVINO's CPU plugin. Thread-safe: concurrent ``infer`` calls each run on
    an infer request of their own (see ``_Compiled``).

    A float model with dynamic axes (the batch) is compiled once as it is, and once more with static shapes for
    the deployment batch its IR records (``[compile.openvino] static_batch``, at load) and for each of the first
    ``STATIC_SHAPES`` input shape sets it sees (on first use, ~0.1 s for avnet): the CPU
    plugin re-infers shapes and re-plans memory on every run of a dynamic model, which cost avnet 11 %
    (unpruned) to 25 % (50 % pruned) per call at batch 1. Later shape sets run on the dynamic model.
    Feeds are copied into a static request's own input tensors and the outputs read from its output
    tensors, not passed as a dict: 40 µs less per call (16 % of the pruned avnet's 0.28 ms; a dict of
    shared arrays costs 51 µs on a one-node model, this path 23 µs).

    Threads: a pool of infer requests per compiled model, chosen by measurement over a lock per compiled model,
    a request per thread and ``AsyncInferQueue`` (benchmarks/bench_runner_threads.py, results/runner-threads-
    2026-12-05.json; avnet, batch 1, 2 cores). With the LATENCY hint (one CPU stream) the plugin runs one request
    at a time anyway: pool, lock and per-thread cost the same (fp32 p50 0.39-0.40 ms; 2240-2460 calls/s from 8
    threads). With several streams (THROUGHPUT hint) only requests that exist side by side run in parallel: from
    2 threads the pool made 4440 calls/s, the lock 1700 (int8: 2450 vs 1450). The pool grows to the peak number
    of concurrent calls, not one request per thread ever seen; AsyncInferQueue cost 0.25 ms more per call (a
    callback and an event), and its ``start_async`` is not safe from several threads.

    Weights are read into memory (``ENABLE_MMAP`` off for this read): by default OpenVINO maps the ``.bin`` file
    and computes from the mapping, so a ``cp`` over a deployed bundle changed a loaded model's outputs and a
    truncated file killed the process with SIGBUS."""

    backend = "openvino"
    STATIC_SHAPES = 4

    def __init__(self, path: Path, spec: IOSpec, options: RunnerOptions):
        super().__init__(spec)
        self._ov = lazy_import("openvino", "the openvino backend")
        self._core = shared_core()  # never a Core of its own: see shared_core
        self._config = self._compile_config(options)
        self._path, self._device = path, options.device.upper()
        try:
            self._model = self._core.read_model(str(path), config={"ENABLE_MMAP": False})
            # What `edgemm compile --openvino-*` recorded in the IR, unless this runner was asked otherwise.
            recorded = runtime_options(self._model)
            if options.throughput:
                recorded.pop("PERFORMANCE_HINT", None)
            self._config = {**self._config, **recorded}
            self.compiled = self._core.compile_model(self._model, self._device, self._config)
        except Exception as exc:  # openvino raises RuntimeError with multi-line text
            raise BundleError(f"openvino cannot load {path} ({str(exc).splitlines()[0]}); re-export the bundle") from exc
        self.inference_precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        names = [o.get_any_name() for o in self.compiled.outputs]
        if names != spec.output_names:
            raise SpecError(f"{path} has outputs {names}, the bundle's IOSpec says {spec.output_names}; re-export the bundle")
        self._inputs = [i.get_any_name() for i in self._model.inputs]
        dynamic = any(i.get_partial_shape().is_dynamic for i in self._model.inputs)
        self._dynamic = self._slot(self.compiled, static=False) if dynamic else None
        # int8 only where the export compiled it static in a child process under this OpenVINO (probe.py): its
        # low-precision passes have died with SIGFPE (no exception to catch) on int8 graphs at a static batch.
        self._specialise = dynamic and (options.precision != "int8" or options.static_probe == OpenVinoBackend._version())
        # the probe compiled batch-1 shapes only: an int8 model gets no other static compile
        self._only = (self._batch_shapes(1),) if options.precision == "int8" else None
        self._requests: dict[tuple, _Compiled] = {}  # input shapes -> the model compiled for them
        self._compile_lock = threading.Lock()  # one compile per new shape set, however many threads bring it
        if not dynamic:
            self._requests[tuple(tuple(i.get_shape()) for i in self._model.inputs)] = self._slot(self.compiled, static=True)
        elif self._specialise:
            key = self._batch_shapes(recorded_static_batch(self._model))
            if key is not None:  # the deployment batch `edgemm compile` recorded: compiled now, not on the first call
                self._requests[key] = self._compile_static(key)

    def _batch_shapes(self, batch: int | None) -> tuple | None:
        """Input shapes with every dynamic batch axis set to ``batch`` (None if another axis is dynamic too)."""
        if batch is None:
            return None
        shapes = []
        for i in self._model.inputs:
            dims = list(i.get_partial_shape())
            if any(d.is_dynamic for d in dims[1:]):
                return None
            shapes.append((batch if dims[0].is_dynamic else dims[0].get_length(), *(d.get_length() for d in dims[1:])))
        return tuple(shapes)

    @staticmethod
    def _compile_config(options: RunnerOptions) -> dict:
        # LATENCY runs one call at a time; THROUGHPUT (many callers, edgemm bench --modes throughput) runs the pool's
        # requests in parallel streams: benchmarks/results/runner-threads-2026-12-05.json.
        config = {"PERFORMANCE_HINT": "THROUGHPUT" if options.throughput else "LATENCY"}
        if options.precision in ("fp32", "int8"):
            # The CPU plugin silently computes in bf16 where the CPU has it; fp32 and the float parts of int8 artifacts must not.
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = int(options.threads)
        return config

    def _slot(self, compiled, static: bool) -> _Compiled:
        return _Compiled(compiled, static)

    def _request_for(self, feeds) -> _Compiled | None:
        key = tuple(tuple(np.shape(feeds[n])) for n in self._inputs)
        entry = self._requests.get(key)
        if entry is None and self._specialise and (self._only is None or key in self._only):
            with self._compile_lock:
                entry = self._requests.get(key)
                if entry is None and len(self._requests) < self.STATIC_SHAPES:
                    entry = self._compile_static(key)
                    self._requests[key] = entry
        return entry or self._dynamic

    def _compile_static(self, key: tuple) -> _Compiled | None:
        model = self._model.clone()
        try:
            model.reshape(dict(zip(self._inputs, (list(k) for k in key))))
            return self._slot(self._core.compile_model(model, self._device, self._config), static=True)
        except Exception as exc:  # openvino raises RuntimeError with multi-line text; the dynamic model still runs it
            logger.warning("warning: openvino cannot compile %s for input shapes %s (%s); running them on the dynamic model",
                           self._path.name, key, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return self._dynamic

    def _check_feeds(self, feeds) -> None:
        """What the CPU plugin cannot take, refused before it sees it (``infer(check=False)`` skips the IOSpec)."""
        for name in self._inputs:
            shape = np.shape(feeds[name])
            if 0 in shape:
                raise SpecError(f"input {name!r} has shape {list(shape)}: the batch (and every axis) must be >= 1, "
                                "an empty feed crashes openvino's CPU plugin; pass at least one sample")

    def _infer(self, feeds):
        if self.compiled is None:
            raise SpecError(f"this openvino runner for {self._path.name} is closed; load the bundle again")
        self._check_feeds(feeds)
        entry = self._request_for(feeds)
        if entry is None:  # a model without dynamic axes, fed other shapes
            raise SpecError(f"{self._path.name} takes input shapes {list(self._requests)[0]}, got "
                            f"{[np.shape(feeds[n]) for n in self._inputs]}; feed those shapes or re-export with a dynamic batch axis")
        req = entry.acquire()
        request = req.request
        if req.views is not None:
            for view, name in zip(req.views, self._inputs):
                np.copyto(view, feeds[name])
            shared = None
        else:
            # The request keeps only the C++ tensor, not the array behind it: ``shared`` holds the arrays (and any
            # copy made here) alive until the run is over, or the plugin reads freed memory.
            shared = [_shared_feed(feeds[name]) for name in self._inputs]
            for i, array in enumerate(shared):
                request.set_input_tensor(i, self._ov.Tensor(array, shared_memory=True))
        request.infer()
        outs = [request.get_output_tensor(i).data.copy() for i in range(len(self.spec.output_names))]
        del shared
        # Back to the pool only after a clean run: a request whose infer raised is dropped, not reused.
        entry.release(req)
        return outs

    def close(self):
        self._requests.clear()
        self._dynamic = None
        self.compiled = None
        self._model = None


class OpenVinoBackend(Backend):
    name = "openvino"
    formats = ("openvino-ir", "onnx")
    precisions = ("fp32", "fp16", "int8")
    description = "OpenVINO, CPU plugin (Intel/x86)"
    artifact_dir = "openvino"
    default_quantizer = "trt"  # symmetric int8 Q/DQ: fastest in OpenVINO's CPU plugin (benchmarks/results/quantizers-*)
    export_precisions = ("fp32", "fp16")
    options = OpenVinoOptions  # [compile.openvino]
    load_priority = 20
    order = 20

    def availability(self) -> Availability:
        v = version_of("openvino")
        if v is None:
            return Availability(False, reason="openvino is not installed", install=INSTALL_HINTS["openvino"])
        return Availability(True, version=v, devices=tuple(shared_core().available_devices))

    def create_runner(self, path: Path, spec: IOSpec, options: RunnerOptions = RunnerOptions()) -> Runner:
        self.require()
        return OpenVinoRunner(path, spec, options)

    def probe_runner(self, path: Path, spec: IOSpec, precision: str) -> dict:
        """An int8 model compiles for its batch-1 shapes in a child process: runners may then compile it static
        (probe.py says why they may not without this)."""
        if precision != "int8":
            return {}
        from .probe import static_compile_failure, static_shapes

        shapes = static_shapes(spec)
        if shapes is None:
            return {}
        why = static_compile_failure(path, shapes, OpenVinoRunner._compile_config(RunnerOptions(precision="int8")))
        if why:
            logger.warning("warning: %s: %s; it runs on its dynamic shapes (slower per call)", path.name, why)
            return {}
        return {"static_probe": self._version()}

    @staticmethod
    def _version() -> str:
        return lazy_import("openvino").__version__

    def compile(self, source: Path, out_dir: Path, spec: IOSpec, precision: str, *, source_precision: str = "fp32",
                options: OpenVinoOptions | None = None) -> list[Compiled]:
        """ONNX -> IR. ``fp16`` stores fp16-compressed weights (half the size; computed in the plugin's precision);
        an int8 Q/DQ ONNX becomes an int8 IR (OpenVINO keeps the FakeQuantize ops it reads from Q/DQ).
        ``options``: the run-time hints are stored in the IR (``OpenVinoOptions``)."""
        self.require()
        opts = options or OpenVinoOptions()
        disable_telemetry()  # openvino_telemetry forks a process per event; Ctrl-C must reach only edgemm
        ov = lazy_import("openvino")
        allowed = ("fp32", "fp16") if source_precision == "fp32" else ("int8",)
        if precision not in allowed:
            raise SpecError(f"openvino compiles a {source_precision} ONNX model to {' or '.join(allowed)}, not {precision!r}")
        try:
            model = ov.convert_model(str(source))
        except Exception as exc:  # openvino raises RuntimeError/OpConversionFailure with multi-line text
            raise BundleError(f"openvino cannot convert {source.name} ({str(exc).splitlines()[0]}); re-export the bundle") from exc
        store_runtime_options(model, opts)
        stem = f"model.{precision}"
        ov.save_model(model, str(out_dir / f"{stem}.xml"), compress_to_fp16=(precision == "fp16"))
        extra = {"compiled_from": source_precision, "runtime_options": opts.runtime(), "static_batch": opts.static_batch}
        return [Compiled(f"{stem}.xml", (f"{stem}.xml", f"{stem}.bin"), {"openvino": self.availability().version or "?"},
                         "openvino-ir", extra)]
