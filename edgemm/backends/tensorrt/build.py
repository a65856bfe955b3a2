"""Building an engine with the TensorRT Python API (10.x and 11.x), on the GPU it will run on.

The steps follow the TensorRT Python API reference (``Builder``, ``INetworkDefinition``, ``OnnxParser``,
``IBuilderConfig``, ``IOptimizationProfile``, ``ITimingCache``) and the 10.x -> 11.x migration guide; every choice
(flags, source graph, profiles, pinned layers, DLA, sparsity, caches) comes from the pure modules beside this one.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ...errors import BackendUnavailable, BundleError, EdgemmError, UnsupportedFeature, one_line
from ...lazy import lazy_import
from ...log import logger
from .cuda import list_gpus
from .fp16 import check_node_names, fp16_cast
from .layers import dla_fallback, engine_summary, fp32_pinned_layers, onnx_node_of
from .onnx_checks import sparse_decision, sparse_layers, trt_qdq_problems
from .plan import BuildPlan, TrtVersion, build_plan, check_supported
from .portability import DeviceInfo, EngineKey, engine_record, engine_stem
from .profiles import Profile, dynamic_network_inputs, profiles_for_spec

INSTALL = ("pip install 'edgemm[tensorrt]' (TensorRT's libraries come from NVIDIA's package index: pip install tensorrt "
           "--extra-index-url https://pypi.nvidia.com; on Jetson they come with JetPack)")


def tensorrt_installed() -> bool:
    """Whether a ``tensorrt`` package is importable. A bare folder named ``tensorrt`` on ``sys.path`` (a namespace
    package, e.g. a test folder) is not TensorRT: real packages have an ``__init__`` (their spec has an origin)."""
    try:
        spec = importlib.util.find_spec("tensorrt")
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, "namespace")


def import_tensorrt():
    """``(tensorrt module, TrtVersion)``; one BackendUnavailable line naming TensorRT and how to install it."""
    if not tensorrt_installed():
        raise BackendUnavailable(f"TensorRT (the tensorrt Python package) is not installed; install it with: {INSTALL}")
    try:
        trt = importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:  # bindings present, libnvinfer missing or for another CUDA
        raise BackendUnavailable(f"TensorRT is installed but does not load ({one_line(exc)[:200]}); install it with: {INSTALL}") from exc
    version = TrtVersion.parse(getattr(trt, "__version__", "0"))
    check_supported(version)
    return trt, version


def make_logger(trt):
    """A ``trt.ILogger`` that keeps errors for one-line messages and sends everything else to edgemm's debug log
    (Python API reference, "ILogger": subclass it and call ``trt.ILogger.__init__``)."""

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))
            logger.debug("tensorrt [%s] %s", severity, msg)

    return _Logger()


def probe_device(trt, version: TrtVersion, index: int = 0) -> DeviceInfo:
    gpus, why = list_gpus()
    if not gpus:
        raise BackendUnavailable(f"TensorRT needs an NVIDIA GPU: {why}")
    if index >= len(gpus):
        raise EdgemmError(f"GPU {index} does not exist; this machine has {len(gpus)} GPU(s): "
                          + ", ".join(f"{g.index}: {g.name}" for g in gpus))
    gpu = gpus[index]
    dla = int(getattr(trt.Builder(make_logger(trt)), "num_DLA_cores", 0) or 0)
    return DeviceInfo(gpu.name, gpu.compute_capability, str(version), dla)


@dataclass
class Built:
    stem: str
    engine: bytes
    timing_cache: bytes | None
    record: dict
    layers: dict = field(default_factory=dict)


def _parse_errors(parser) -> list[str]:
    return [one_line(parser.get_error(i).desc()) for i in range(parser.num_errors)]


def build_engine(trt, onnx_path: Path, plan: BuildPlan, profiles: Sequence[Profile], *, optimization_level: int,
                 workspace_mb: int | None, timing_caches: Sequence[bytes], keep_timing_cache: bool, keep_nodes: Sequence[str],
                 keep_ops: Sequence[str], node_ops: dict[str, str]) -> tuple[bytes, bytes | None, dict, dict, dict]:
    """Parse ``onnx_path`` and build it as ``plan`` says: ``(engine, timing cache, layer info, DLA report, summary)``."""
    log = make_logger(trt)
    builder = trt.Builder(log)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log)
    # parse_from_file resolves external weight files next to the model
    if not parser.parse_from_file(str(onnx_path)):
        errors = _parse_errors(parser) or log.errors or ["no reason given"]
        raise BundleError(f"TensorRT {plan.version} cannot parse {onnx_path.name}: {errors[0]}"
                          + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "") + "; re-export the bundle or report it")
    inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    dynamic = dynamic_network_inputs(inputs, profiles)

    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    config.builder_optimization_level = int(optimization_level)
    for name in plan.set_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise UnsupportedFeature(f"TensorRT {plan.version} has no BuilderFlag.{name}, which a {plan.precision} build "
                                     "needs here; build with TensorRT 10 or 11")
        config.set_flag(flag)
    for name in plan.clear_flags:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is not None:  # a default-on flag this version lacks is already off
            config.clear_flag(flag)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer details for the engine inspector
    if dynamic:
        for p in profiles:
            prof = builder.create_optimization_profile()
            for name in dynamic:
                lo, opt, hi = p.shapes[name]
                prof.set_shape(name, lo, opt, hi)
            config.add_optimization_profile(prof)

    cache = config.create_timing_cache(b"")
    for blob in timing_caches:
        # a cache from another device or version would be refused by set_timing_cache; combine skips mismatches
        cache.combine(config.create_timing_cache(blob), True)
    config.set_timing_cache(cache, False)

    layers: dict[str, dict] = {}
    by_name = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        node = onnx_node_of(layer.name, getattr(layer, "metadata", None), node_ops)
        layers[layer.name] = {"type": str(layer.type).split(".")[-1], "onnx_node": node, "onnx_op": node_ops.get(node or "")}
        by_name[layer.name] = layer
    if plan.dla_core is not None:
        if builder.num_DLA_cores <= plan.dla_core:
            raise UnsupportedFeature(f"DLA core {plan.dla_core} does not exist here ({builder.num_DLA_cores} DLA core(s)); "
                                     "leave the DLA core unset for a GPU engine")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(plan.dla_core)
        for name, layer in by_name.items():
            layers[name]["can_run_on_dla"] = bool(config.can_run_on_DLA(layer))
    dla = dla_fallback(layers, plan.dla_core, plan.gpu_fallback)
    if plan.pin_fp32_layers:
        floats = (trt.float32, trt.float16)
        for name in fp32_pinned_layers(layers, keep_nodes, keep_ops):
            layer = by_name[name]
            outs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in floats]
            if not outs:
                continue  # shape/index layers: nothing to keep in fp32
            layer.precision = trt.float32
            for j in outs:
                layer.set_output_type(j, trt.float32)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        why = log.errors[-1] if log.errors else "no reason given"
        raise BundleError(f"TensorRT {plan.version} could not build {onnx_path.name} as {plan.precision}: {one_line(why)[:300]}")
    engine = bytes(serialized)
    timing = bytes(config.get_timing_cache().serialize()) if keep_timing_cache else None
    summary = {}
    runtime = trt.Runtime(log)
    deserialized = runtime.deserialize_cuda_engine(engine)
    if deserialized is not None:
        inspector = deserialized.create_engine_inspector()
        summary = engine_summary(json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON)))
    return engine, timing, layers, dla, summary


def build(source: Path, spec, precision: str, *, source_precision: str, opts, trt, version: TrtVersion, device: DeviceInfo,
          timing_caches: Sequence[bytes] = (), source_label: str | None = None) -> Built:
    """One engine of ``precision`` from the ONNX at ``source`` on ``device`` (see :func:`import_tensorrt`, :func:`probe_device`)."""
    onnx = lazy_import("onnx")
    model = onnx.load(str(source))
    if source_precision == "int8":
        problems = trt_qdq_problems(model)
        if problems:
            raise EdgemmError(f"{source.name} is not a TensorRT-valid Q/DQ model: {problems[0]}"
                              + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
                              + "; re-export with `edgemm export ... --int8 --target tensorrt`")
    if precision == "fp16":
        check_node_names(model, opts.fp32_nodes)
    sparse = sparse_decision(opts.sparse_weights, sparse_layers(model), device.compute_capability)
    plan = build_plan(version, precision, source_precision=source_precision, dla_core=opts.dla_core,
                      gpu_fallback=opts.gpu_fallback, sparse_weights=sparse["enabled"], tf32=opts.tf32)
    profiles = profiles_for_spec(spec, opts.profiles, opts.undeclared_axis_max)
    node_ops = {n.name: n.op_type for n in model.graph.node if n.name}
    fp16_report = None
    with tempfile.TemporaryDirectory(prefix="edgemm-trt-") as tmp:
        onnx_path = source
        if plan.source == "fp16-cast":
            cast, rep = fp16_cast(model, opts.fp32_nodes, opts.fp32_ops)
            fp16_report = rep.to_dict()
            onnx_path = Path(tmp) / "model.fp16.onnx"
            onnx.save(cast, str(onnx_path), save_as_external_data=cast.ByteSize() > 1_800_000_000)
        del model
        engine, timing, layers, dla, summary = build_engine(
            trt, onnx_path, plan, profiles, optimization_level=opts.optimization_level, workspace_mb=opts.workspace_mb,
            timing_caches=timing_caches if opts.timing_cache else (), keep_timing_cache=opts.timing_cache,
            keep_nodes=opts.fp32_nodes, keep_ops=opts.fp32_ops, node_ops=node_ops)
    if dla["gpu_layers"]:
        logger.info("DLA core %s: %d layer(s) fall back to the GPU (%s)", opts.dla_core, len(dla["gpu_layers"]),
                    ", ".join(f"{k} x{v}" for k, v in dla["gpu_by_type"].items()))
    key = EngineKey(device.compute_capability, str(version), precision, tuple(profiles))
    stem = engine_stem(precision, device.compute_capability, str(version))
    record = engine_record(key, source=source_label or source.name, plan=plan.to_dict(), timing_cache=None,
                           dla_core=opts.dla_core, fallback_layers=dla["gpu_layers"], sparse_weights=sparse, fp16=fp16_report)
    record["gpu"] = device.name
    record["dla"] = dla
    record["engine"] = summary
    return Built(stem, engine, timing, record, layers)
