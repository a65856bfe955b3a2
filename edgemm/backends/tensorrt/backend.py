"""The TensorRT backend: engines built on the target GPU from the bundle's fp32, fp16 and Q/DQ int8 ONNX
(TensorRT 10 and 11), recorded with the device and version they need, rebuilt when they do not match, run with a
cuda-python stream runner. Listed everywhere; usable where TensorRT and an NVIDIA GPU are."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ...errors import EdgemmError
from ...iospec import IOSpec
from ...options import build_options
from ..base import Availability, Backend, Compiled, Runner, RunnerOptions
from .availability import probe
from .cuda import device_index, list_gpus
from .options import TensorRTOptions
from .portability import timing_cache_name


def _cuda_devices() -> tuple[str, ...]:
    """Names of the visible CUDA GPUs, () when none (kept for callers of the former helper)."""
    gpus, _ = list_gpus()
    return tuple(g.name for g in gpus)


@lru_cache(maxsize=1)
def _availability() -> Availability:
    return probe()


def _options_dict(opts: TensorRTOptions) -> dict:
    from dataclasses import fields

    return {f.name: (list(v) if isinstance(v := getattr(opts, f.name), tuple) else v) for f in fields(opts)}


class TensorRTBackend(Backend):
    name = "tensorrt"
    formats = ("tensorrt-plan",)
    precisions = ("fp32", "fp16", "int8")
    description = "NVIDIA TensorRT engines (built on the target GPU)"
    device = "gpu"
    artifact_dir = "tensorrt"
    default_quantizer = "trt"
    int8_symmetric_only = True  # TensorRT 10/11 takes int8 Q/DQ with zero-point 0 only
    checked_by = "onnxruntime"  # its Q/DQ ONNX (the engine source) runs in ONNX Runtime on any CPU
    load_priority = 0
    order = 30
    options = TensorRTOptions  # [compile.tensorrt]

    def availability(self) -> Availability:
        """TensorRT's version and each GPU (name, compute capability, DLA cores), or why not + the install command.
        Probed once per process: the installed libraries and GPUs do not change under a running program."""
        return _availability()

    def _environment(self, index: int = 0):
        from .build import import_tensorrt, probe_device

        self.require()  # one line naming TensorRT and how to install it, where it is missing
        trt, version = import_tensorrt()
        return trt, version, probe_device(trt, version, index)

    def create_runner(self, path: Path, spec: IOSpec, options: RunnerOptions = RunnerOptions()) -> Runner:
        """A runner for the engine at ``path``; an engine built for another GPU or TensorRT version is rebuilt from its
        source ONNX (cached outside the bundle) unless ``options.rebuild`` is False (then refused in one line)."""
        from .build import build
        from .engines import engine_for_device
        from .runner import TensorRTRunner

        index = device_index(options.device)
        trt, version, device = self._environment(index)

        def rebuild(source: Path, precision: str, source_precision: str, recorded: dict):
            opts = build_options(TensorRTOptions, recorded, "the engine's recorded [compile.tensorrt] options")
            return build(source, spec, precision, source_precision=source_precision, opts=opts, trt=trt, version=version,
                         device=device, source_label=None)

        engine, record = engine_for_device(Path(path), spec, device, allow_rebuild=getattr(options, "rebuild", None),
                                           build_fn=rebuild)
        cuda_graph = getattr(options, "cuda_graph", None)
        if cuda_graph is None:
            cuda_graph = bool(((record or {}).get("options") or {}).get("cuda_graph", False))
        return TensorRTRunner(engine, spec, device_index=index, cuda_graph=cuda_graph, label=Path(path).name)

    def compile(self, source: Path, out_dir: Path, spec: IOSpec, precision: str, *, source_precision: str = "fp32",
                options: TensorRTOptions | dict | None = None) -> list[Compiled]:
        """Build an engine of ``precision`` on this machine's GPU from ``source`` (the fp32 ONNX for fp32/fp16, the
        Q/DQ ONNX for int8) into ``out_dir``: the ``.plan``, its side file (the build record the loader checks) and the
        timing cache of this GPU and TensorRT version (reused by later builds)."""
        from .build import build
        from .engines import source_label, timing_caches_near

        opts = build_options(TensorRTOptions, options, "[compile.tensorrt]")
        if precision not in self.precisions:
            raise EdgemmError(f"TensorRT has no {precision!r} precision; use one of {', '.join(self.precisions)}")
        trt, version, device = self._environment(0)
        source, out_dir = Path(source), Path(out_dir)
        caches = timing_caches_near(source, out_dir, device) if opts.timing_cache else []
        built = build(source, spec, precision, source_precision=source_precision, opts=opts, trt=trt, version=version,
                      device=device, timing_caches=caches, source_label=source_label(source, out_dir))
        out_dir.mkdir(parents=True, exist_ok=True)
        plan = f"{built.stem}.plan"
        (out_dir / plan).write_bytes(built.engine)
        files = [plan]
        record = dict(built.record)
        if built.timing_cache:
            cache = timing_cache_name(device.compute_capability, device.trt_version, precision)
            (out_dir / cache).write_bytes(built.timing_cache)
            files.append(cache)
            record["timing_cache"] = cache
        record["options"] = _options_dict(opts)
        side = f"{built.stem}.json"
        (out_dir / side).write_text(json.dumps({"tensorrt": record}, indent=2, sort_keys=True))
        files.append(side)
        return [Compiled(plan, tuple(files), {"tensorrt": str(version)}, "tensorrt-plan", {"tensorrt": record})]
