"""The CUDA calls the TensorRT runner needs, through cuda-python (``cuda.bindings.runtime``; ``cuda.cudart`` before
cuda-python 12.6) or, where only it is installed, pycuda.

Both expose the same small surface: device and pinned host allocations, one stream, async copies, and (cuda-python
only) CUDA-graph capture. cuda-python returns ``(error, *values)`` tuples (cuda-python docs, "Overview"); a non-zero
error becomes one :class:`CudaError` line. GPU discovery for ``edgemm backends`` uses the driver API
(``cuDeviceGetName``, ``cuDeviceGetAttribute(COMPUTE_CAPABILITY_MAJOR/MINOR)``), which needs no context.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ...errors import BackendUnavailable, EdgemmError

CUDA_INSTALL = "pip install cuda-python (and an NVIDIA driver: check nvidia-smi)"


class CudaError(EdgemmError):
    """A CUDA runtime/driver call failed."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: tuple[int, int]


def pick_binding(have_cuda_python: bool, have_pycuda: bool) -> str | None:
    """cuda-python first (it has graph capture and no context juggling), pycuda where it is the one installed."""
    if have_cuda_python:
        return "cuda-python"
    if have_pycuda:
        return "pycuda"
    return None


def _find(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package that is not a package
        return False


def installed_binding() -> str | None:
    return pick_binding(_find("cuda.bindings") or _find("cuda.cudart"), _find("pycuda"))


def _cuda_python_modules():
    try:
        from cuda.bindings import driver, runtime
    except ImportError:
        from cuda import cuda as driver, cudart as runtime  # cuda-python < 12.6
    return driver, runtime


def list_gpus() -> tuple[list[GpuInfo], str | None]:
    """The visible GPUs, or ``([], why not)``; never raises for a missing driver."""
    binding = installed_binding()
    if binding is None:
        return [], f"neither cuda-python nor pycuda is installed ({CUDA_INSTALL})"
    try:
        if binding == "cuda-python":
            driver, _ = _cuda_python_modules()
            err, = driver.cuInit(0)
            if int(err) != 0:
                return [], f"the CUDA driver does not initialise (error {int(err)}: {err.name if hasattr(err, 'name') else err})"
            err, count = driver.cuDeviceGetCount()
            if int(err) != 0:
                return [], f"cuDeviceGetCount failed (error {int(err)})"
            gpus = []
            attr = driver.CUdevice_attribute
            for i in range(count):
                _, dev = driver.cuDeviceGet(i)
                _, raw = driver.cuDeviceGetName(128, dev)
                _, major = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
                _, minor = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
                gpus.append(GpuInfo(i, bytes(raw).split(b"\0")[0].decode(errors="replace"), (int(major), int(minor))))
            return gpus, None if gpus else "the CUDA driver reports no GPU"
        drv = importlib.import_module("pycuda.driver")
        drv.init()
        gpus = [GpuInfo(i, drv.Device(i).name(), tuple(drv.Device(i).compute_capability())) for i in range(drv.Device.count())]
        return gpus, None if gpus else "the CUDA driver reports no GPU"
    except (RuntimeError, OSError, ImportError) as exc:  # no driver library (cuda-python raises RuntimeError subclasses)
        return [], f"no usable CUDA driver ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"


def device_index(device: str) -> int:
    """``RunnerOptions.device`` -> a GPU index: ``cuda:1`` / ``gpu:1`` -> 1; ``cuda``, ``gpu`` or the default ``cpu``
    (runners are made with the CPU default unless told) -> 0."""
    text = (device or "").strip().lower()
    if text in ("", "cpu", "cuda", "gpu"):
        return 0
    head, _, idx = text.partition(":")
    if head in ("cuda", "gpu") and idx.isdigit():
        return int(idx)
    raise EdgemmError(f"device {device!r} is not a GPU; use cuda, cuda:N or gpu:N for TensorRT")


class CudaApi:
    """The calls the runner makes; see :class:`CudaPython` and :class:`PyCuda`."""

    name = ""
    can_capture = False


class CudaPython(CudaApi):
    name = "cuda-python"
    can_capture = True

    def __init__(self, index: int = 0):
        _, self.rt = _cuda_python_modules()
        self.index = index
        self._call(self.rt.cudaSetDevice, index)

    def _call(self, fn, *args):
        out = fn(*args)
        err = out[0]
        if int(err) != 0:
            _, text = self.rt.cudaGetErrorString(err)
            raise CudaError(f"CUDA {fn.__name__} failed: {text.decode() if isinstance(text, bytes) else text} (error {int(err)})")
        return out[1] if len(out) == 2 else (out[1:] or None)

    @contextmanager
    def active(self):
        """cudaSetDevice is per host thread: every call from a runner's caller thread selects the runner's GPU."""
        self._call(self.rt.cudaSetDevice, self.index)
        yield

    def alloc_device(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc, max(int(nbytes), 1)))

    def free_device(self, ptr: int) -> None:
        self._call(self.rt.cudaFree, ptr)

    def alloc_pinned(self, nbytes: int) -> tuple[np.ndarray, object]:
        ptr = int(self._call(self.rt.cudaMallocHost, max(int(nbytes), 1)))
        buf = (ctypes.c_uint8 * max(int(nbytes), 1)).from_address(ptr)
        return np.ctypeslib.as_array(buf), ptr

    def free_pinned(self, handle) -> None:
        self._call(self.rt.cudaFreeHost, handle)

    def stream_create(self):
        return self._call(self.rt.cudaStreamCreateWithFlags, self.rt.cudaStreamNonBlocking)

    def stream_handle(self, stream) -> int:
        return int(stream)

    def stream_destroy(self, stream) -> None:
        self._call(self.rt.cudaStreamDestroy, stream)

    def sync(self, stream) -> None:
        self._call(self.rt.cudaStreamSynchronize, stream)

    def htod(self, dst: int, host: np.ndarray, nbytes: int, stream) -> None:
        self._call(self.rt.cudaMemcpyAsync, dst, host.ctypes.data, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def dtoh(self, host: np.ndarray, src: int, nbytes: int, stream) -> None:
        self._call(self.rt.cudaMemcpyAsync, host.ctypes.data, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def capture_begin(self, stream) -> None:
        # thread-local mode: other threads' CUDA calls are not forbidden while this stream records
        self._call(self.rt.cudaStreamBeginCapture, stream, self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)

    def capture_end(self, stream):
        return self._call(self.rt.cudaStreamEndCapture, stream)

    def graph_instantiate(self, graph):
        return self._call(self.rt.cudaGraphInstantiate, graph, 0)

    def graph_launch(self, exec_graph, stream) -> None:
        self._call(self.rt.cudaGraphLaunch, exec_graph, stream)

    def graph_destroy(self, graph, exec_graph) -> None:
        if exec_graph is not None:
            self._call(self.rt.cudaGraphExecDestroy, exec_graph)
        if graph is not None:
            self._call(self.rt.cudaGraphDestroy, graph)


class PyCuda(CudaApi):
    """pycuda keeps a context per host thread: the runner's calls push the GPU's primary context and pop it."""

    name = "pycuda"
    can_capture = False

    def __init__(self, index: int = 0):
        self.drv = importlib.import_module("pycuda.driver")
        self.drv.init()
        self.ctx = self.drv.Device(index).retain_primary_context()
        self.index = index

    @contextmanager
    def active(self):
        self.ctx.push()
        try:
            yield
        finally:
            self.drv.Context.pop()

    def alloc_device(self, nbytes: int) -> int:
        alloc = self.drv.mem_alloc(max(int(nbytes), 1))
        self._keep = getattr(self, "_keep", {})
        self._keep[int(alloc)] = alloc  # the allocation is freed with its Python object
        return int(alloc)

    def free_device(self, ptr: int) -> None:
        alloc = self._keep.pop(ptr, None)
        if alloc is not None:
            alloc.free()

    def alloc_pinned(self, nbytes: int) -> tuple[np.ndarray, object]:
        arr = self.drv.pagelocked_empty(max(int(nbytes), 1), np.uint8)
        return arr, arr

    def free_pinned(self, handle) -> None:
        handle.base.free()

    def stream_create(self):
        return self.drv.Stream()

    def stream_handle(self, stream) -> int:
        return int(stream.handle)

    def stream_destroy(self, stream) -> None:
        del stream

    def sync(self, stream) -> None:
        if isinstance(stream, int):  # another library's stream handle: pycuda can only wait for the whole context
            self.drv.Context.synchronize()
        else:
            stream.synchronize()

    def htod(self, dst: int, host: np.ndarray, nbytes: int, stream) -> None:
        self.drv.memcpy_htod_async(dst, host[:nbytes], stream)

    def dtoh(self, host: np.ndarray, src: int, nbytes: int, stream) -> None:
        self.drv.memcpy_dtoh_async(host[:nbytes], src, stream)


def cuda_api(index: int = 0) -> CudaApi:
    binding = installed_binding()
    if binding == "cuda-python":
        return CudaPython(index)
    if binding == "pycuda":
        return PyCuda(index)
    raise BackendUnavailable(f"TensorRT's runner needs cuda-python or pycuda for device buffers; install it with: {CUDA_INSTALL}")
