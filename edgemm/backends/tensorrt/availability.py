"""What ``edgemm backends`` says about TensorRT: version, GPUs (name, compute capability, DLA cores), or why not and
how to install it. :func:`availability_report` composes plain facts; :func:`probe` gathers them on this machine."""
from __future__ import annotations

from typing import Sequence

from ...errors import BackendUnavailable, one_line
from ..base import Availability, version_of
from .cuda import CUDA_INSTALL, GpuInfo, list_gpus

# what `pip install 'edgemm[tensorrt]'` cannot bring by itself: TensorRT's libraries are not on the default index
INSTALL = ("pip install 'edgemm[tensorrt]' (TensorRT's libraries come from NVIDIA's package index: pip install tensorrt "
           "--extra-index-url https://pypi.nvidia.com; on Jetson they come with JetPack)")


def describe_gpu(gpu: GpuInfo, dla_cores: int | None) -> str:
    dla = f", {dla_cores} DLA core{'s' if dla_cores != 1 else ''}" if dla_cores is not None else ""
    return f"GPU {gpu.index}: {gpu.name} (compute capability {gpu.compute_capability[0]}.{gpu.compute_capability[1]}{dla})"


def availability_report(trt_version: str | None, load_error: str | None, gpus: Sequence[GpuInfo], gpu_error: str | None,
                        dla_cores: int | None = None) -> Availability:
    """``trt_version``: None when TensorRT is not installed; ``load_error``: why an installed TensorRT does not load."""
    if trt_version is None and load_error is None:
        return Availability(False, reason="TensorRT is not installed (NVIDIA GPUs and Jetson only)", install=INSTALL)
    if load_error is not None:
        return Availability(False, version=trt_version, reason=load_error, install=INSTALL)
    if not gpus:
        return Availability(False, version=trt_version, reason=f"TensorRT {trt_version} is installed but no NVIDIA GPU is usable: "
                                                                f"{gpu_error or 'none found'}", install=CUDA_INSTALL)
    return Availability(True, version=trt_version, devices=tuple(describe_gpu(g, dla_cores) for g in gpus))


def probe() -> Availability:
    from .build import import_tensorrt, make_logger, tensorrt_installed

    if not tensorrt_installed():
        return availability_report(None, None, [], None)

    dist = version_of("tensorrt") or version_of("tensorrt-cu12") or version_of("tensorrt-cu13")
    try:
        trt, version = import_tensorrt()
    except BackendUnavailable as exc:
        return availability_report(dist or "?", str(exc).split("; install it with:")[0], [], None)
    gpus, why = list_gpus()
    dla = None
    if gpus:
        try:
            dla = int(trt.Builder(make_logger(trt)).num_DLA_cores)
        except (RuntimeError, TypeError) as exc:  # the builder needs a working CUDA context
            return availability_report(str(version), None, [], f"TensorRT cannot open the GPU ({one_line(exc)[:160]})")
    return availability_report(str(version), None, gpus, why, dla)
