from __future__ import annotations

from pathlib import Path

import numpy as np

from ...lazy import INSTALL_HINTS, lazy_import
from ...errors import BundleError, SpecError
from ...iospec import IOSpec
from ...log import logger
from ..base import Availability, Backend, Compiled, Runner, RunnerOptions, version_of
from .options import LEVELS, OnnxRuntimeOptions


def allow_spinning(options: RunnerOptions) -> bool:
    """Whether ONNX Runtime's intra-op workers busy-wait after each run (its default; ``options.spin`` overrides).

    Measured both ways (benchmarks/bench_ort_spinning.py, through the bench's own workers, 2 cores, 2 threads):
    on a quiet machine spinning is faster for the model alone and end to end (avnet: model 0.63 vs 1.08 ms,
    end_to_end 1.02 vs 1.45 ms, results/e2e-spinning-quiet-2026-11-30.json); under load from other processes
    the spinner takes the core that capture and pre-processing need (end_to_end/model 3.2x vs 1.18x,
    results/e2e-spinning-2026-11-30.json). The default is the library's; ``spin=False`` is for loaded machines."""
    return True if options.spin is None else options.spin


def model_in_memory(path: Path) -> bytes | str:
    """What the runner hands to ``InferenceSession``: the model's bytes, with any external data read in.

    ONNX Runtime copies the weights stored inside an .onnx file, but memory-maps external data files
    (``.onnx.data``) and computes from the mapping: overwriting one under a loaded session changed its outputs,
    truncating it killed the process with SIGBUS. Such a model is read into memory with onnx; one over
    protobuf's 2 GB limit cannot be, and runs from its files (with a warning)."""
    data = path.read_bytes()
    if data[4:8] == b"ORTM" or b"location" not in data:  # ORT's flatbuffer format has no external data; an ONNX
        return data  # external tensor names its file under the key "location"
    onnx = lazy_import("onnx")
    try:
        proto = onnx.load_model_from_string(data)
        if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in _tensors(proto.graph)):
            return data
        onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
    except Exception as exc:  # onnx raises protobuf's DecodeError, OSError, ValueError for a path outside the folder
        raise BundleError(f"cannot read {path} or its external data ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                          "re-export the bundle") from exc
    try:
        return proto.SerializeToString()
    except ValueError as exc:  # protobuf: a message over 2 GB
        logger.warning("warning: %s keeps its weights in external data files that onnxruntime maps into memory (%s); "
                       "do not overwrite them while a runtime uses them", path.name, str(exc).splitlines()[0])
        return str(path)


def _tensors(graph):
    """Every initializer and constant tensor of a graph and its subgraphs (If/Loop bodies)."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def batch_dim_names(spec: IOSpec) -> list[str]:
    """The names of the dynamic batch axes of the inputs (ONNX ``dim_param``s), for free-dimension overrides."""
    return sorted({t.shape[0] for t in spec.inputs if t.shape and isinstance(t.shape[0], str)})


class OrtRunner(Runner):
    """Runs an ONNX file in ONNX Runtime's CPU execution provider. Thread-safe as it is: ``InferenceSession.run``
    may be called from several threads at once (each run gets its own execution frame; tests/runtime/
    test_runner_threads.py checks 8 threads against serial outputs). The session is made from the model's bytes
    (``model_in_memory``): nothing it computes from stays mapped from the bundle's files."""

    backend = "onnxruntime"

    def __init__(self, path: Path, spec: IOSpec, options: RunnerOptions, static_batch: int | None = None):
        super().__init__(spec)
        self._path, self._options, self._static_batch = path, options, static_batch
        try:
            self._model = model_in_memory(path)
        except OSError as exc:
            raise BundleError(f"cannot read {path} ({exc.strerror or exc}); re-export the bundle") from exc
        self.session = self._session(static_batch)
        # With a static batch, feeds of another batch run on a dynamic session made on first need.
        self._dynamic = None if static_batch else self.session
        names = [o.name for o in self.session.get_outputs()]
        if names != spec.output_names:
            raise SpecError(f"{path} has outputs {names}, the bundle's IOSpec says {spec.output_names}; re-export the bundle")

    def _session(self, static_batch: int | None):
        ort = lazy_import("onnxruntime")
        so = ort.SessionOptions()
        if self._options.threads:
            so.intra_op_num_threads = self._options.threads
            so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning(self._options) else "0")
        so.log_severity_level = 3
        if static_batch:
            for name in batch_dim_names(self.spec):
                so.add_free_dimension_override_by_name(name, int(static_batch))
        try:
            return ort.InferenceSession(self._model, so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(f"onnxruntime cannot load {self._path} ({str(exc).splitlines()[0]}); re-export the bundle") from exc

    def _infer(self, feeds):
        if self._static_batch and any(np.shape(feeds[t.name])[0] != self._static_batch for t in self.spec.inputs
                                      if isinstance(t.shape[0], str)):
            if self._dynamic is None:
                self._dynamic = self._session(None)
            return self._dynamic.run(self.spec.output_names, feeds)
        return self.session.run(self.spec.output_names, feeds)

    def close(self):
        self.session = self._dynamic = None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = ("onnx", "ort")  # ort: ONNX Runtime's flatbuffer format (mobile and minimal builds), loaded the same way
    precisions = ("fp32", "fp16", "int8")
    description = "ONNX Runtime, CPU execution provider"
    artifact_dir = "onnx"
    default_quantizer = "ort"
    load_priority = 10
    order = 10
    options = OnnxRuntimeOptions  # [compile.onnxruntime]; the default level (extended) stays portable across x86 CPUs

    def availability(self) -> Availability:
        v = version_of("onnxruntime")
        if v is None:
            return Availability(False, reason="onnxruntime is not installed", install=INSTALL_HINTS["onnxruntime"])
        ort = lazy_import("onnxruntime")
        return Availability(True, version=v, devices=tuple(ort.get_available_providers()))

    def create_runner(self, path: Path, spec: IOSpec, options: RunnerOptions = RunnerOptions()) -> Runner:
        self.require()
        return OrtRunner(path, spec, options)

    def compile(self, source: Path, out_dir: Path, spec: IOSpec, precision: str, *, source_precision: str = "fp32",
                options: OnnxRuntimeOptions | None = None) -> list[Compiled]:
        """ONNX Runtime's offline-optimized model (graph fusions at ``options.optimization_level``, default extended:
        portable across x86 CPUs)."""
        self.require()
        opts = options or OnnxRuntimeOptions()
        if precision != source_precision:
            raise SpecError(f"onnxruntime compiles a {source_precision} model as {source_precision}, not {precision}; "
                            f"export with --int8 for an int8 model")
        ort = lazy_import("onnxruntime")
        stem = f"model.{precision}.ort-{opts.optimization_level}"
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[opts.optimization_level])
        so.optimized_model_filepath = str(out_dir / f"{stem}.onnx")
        so.log_severity_level = 3
        try:
            ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(f"onnxruntime cannot optimize {source.name} ({str(exc).splitlines()[0]}); re-export the bundle") from exc
        extra = {"optimization_level": opts.optimization_level, "compiled_from": source_precision}
        return [Compiled(f"{stem}.onnx", (f"{stem}.onnx",), {"onnxruntime": self.availability().version or "?"}, "onnx", extra)]
