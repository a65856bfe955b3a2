from __future__ import annotations

import importlib.util
from pathlib import Path

from ...lazy import INSTALL_HINTS
from ...errors import UnsupportedFeature
from ...iospec import IOSpec
from ..base import Availability, Backend, Runner, RunnerOptions, version_of


def _cuda_devices() -> tuple[str, ...]:
    """Names of visible CUDA devices through the driver API (cuda-python), or () when none."""
    if importlib.util.find_spec("cuda") is None:
        return ()
    try:
        from cuda.bindings import driver as cu
    except ImportError:
        return ()
    err, = cu.cuInit(0)[:1]
    if int(err) != 0:
        return ()
    err, count = cu.cuDeviceGetCount()
    if int(err) != 0:
        return ()
    names = []
    for i in range(count):
        _, dev = cu.cuDeviceGet(i)
        _, raw = cu.cuDeviceGetName(64, dev)
        names.append(raw.split(b"\0")[0].decode())
    return tuple(names)


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

    def availability(self) -> Availability:
        v = version_of("tensorrt") or version_of("tensorrt-cu12") or version_of("tensorrt-cu13")
        if v is None or importlib.util.find_spec("tensorrt") is None:
            return Availability(False, reason="tensorrt is not installed (it needs an NVIDIA GPU machine)", install=INSTALL_HINTS["tensorrt"])
        devices = _cuda_devices()
        if not devices:
            return Availability(False, version=v, reason="no CUDA device is visible (driver or cuda-python missing)",
                                install="pip install cuda-python; check nvidia-smi")
        return Availability(True, version=v, devices=devices)

    def create_runner(self, path: Path, spec: IOSpec, options: RunnerOptions = RunnerOptions()) -> Runner:
        self.require()
        raise UnsupportedFeature(
            "running TensorRT engines comes with the `edgemm compile --target tensorrt` capability, which this "
            "edgemm version does not have yet; use --backend onnxruntime or openvino"
        )

    def compile(self, source: Path, out_dir: Path, spec: IOSpec, precision: str, *, source_precision: str = "fp32"):
        self.require()  # one line naming TensorRT and how to get it, where it is missing
        raise UnsupportedFeature(
            "building TensorRT engines is not in this edgemm version yet; the bundle's tensorrt/ ONNX files are the engine "
            "sources (trtexec --onnx=FILE --int8 builds one on the target GPU)"
        )
