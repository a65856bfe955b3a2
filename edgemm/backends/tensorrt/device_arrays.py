"""Inputs that already live on the GPU: read their device pointer, shape and dtype without copying.

Two protocols cover CuPy, PyTorch, Numba, JAX and friends:

- CUDA Array Interface v2/v3 (Numba docs, "CUDA Array Interface"): ``obj.__cuda_array_interface__`` is a dict
  with ``data: (ptr, read_only)``, ``shape``, ``typestr`` (numpy's), ``strides`` (bytes; None for C order),
  ``version`` and optional ``mask`` (unsupported) / ``stream``.
- DLPack (``dlpack.h``; Python array API standard, ``__dlpack__`` / ``__dlpack_device__``): a ``dltensor`` capsule
  holding a ``DLManagedTensor`` whose first member is the ``DLTensor`` {data, device, ndim, dtype, shape, strides
  (elements; NULL for C order), byte_offset}. The capsule is kept alive (not consumed) while the pointer is used.

Host arrays (numpy, or DLPack on the CPU) are not device arrays: :func:`device_array_of` returns None for them.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import SpecError

KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED = 1, 2, 3, 13
_DL_DTYPES = {(0, 8): np.int8, (0, 16): np.int16, (0, 32): np.int32, (0, 64): np.int64, (1, 8): np.uint8,
              (2, 16): np.float16, (2, 32): np.float32, (2, 64): np.float64, (6, 8): np.bool_}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int), ("dtype", _DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


@dataclass(frozen=True)
class DeviceArray:
    """A tensor in GPU memory: its address, shape, dtype and the object that keeps the memory alive."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    device_id: int
    owner: Any
    sync_stream: int | None = None  # a producer stream to wait for before reading (CUDA Array Interface v3 ``stream``)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def placeholder(self) -> np.ndarray:
        """A numpy array of this shape and dtype that owns no memory (stride 0): for shape/dtype checks only."""
        return np.lib.stride_tricks.as_strided(np.zeros(1, self.dtype), shape=self.shape, strides=(0,) * len(self.shape),
                                               writeable=False)


def _c_contiguous(shape, strides, itemsize: int) -> bool:
    expect = itemsize
    for dim, stride in zip(reversed(shape), reversed(strides)):
        if dim != 1 and stride != expect:
            return False
        expect *= dim
    return True


def from_cuda_array_interface(obj: Any, where: str = "") -> DeviceArray:
    cai = obj.__cuda_array_interface__
    if not isinstance(cai, dict) or "data" not in cai or "shape" not in cai or "typestr" not in cai:
        raise SpecError(f"{where}__cuda_array_interface__ lacks data/shape/typestr; pass a numpy array or a CUDA tensor")
    if cai.get("mask") is not None:
        raise SpecError(f"{where}masked CUDA arrays are not supported; pass the array without a mask")
    ptr = int(cai["data"][0] or 0)
    shape = tuple(int(d) for d in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    strides = cai.get("strides")
    if strides is not None and not _c_contiguous(shape, strides, dtype.itemsize):
        raise SpecError(f"{where}the CUDA array is not C-contiguous (strides {list(strides)}); make it contiguous first "
                        "(e.g. tensor.contiguous() or cupy.ascontiguousarray)")
    # v3 "stream": None = nothing pending; 1 / 2 = the legacy / per-thread default stream; else a stream pointer
    stream = cai.get("stream")
    return DeviceArray(ptr, shape, dtype, -1, obj, None if stream in (None, 0) else int(stream))


def dlpack_view(obj: Any, where: str = "", stream: int | None = None) -> tuple[DeviceArray, int]:
    """``(array view, DLPack device type)`` of a DLPack producer (any device); the capsule rides in ``owner``.
    ``stream``: the consumer's CUDA stream; the producer makes its pending work visible on it (DLPack's
    ``__dlpack__(stream=...)`` contract)."""
    if stream is None:
        capsule = obj.__dlpack__()
    else:
        try:
            capsule = obj.__dlpack__(stream=stream)
        except TypeError:  # a producer without the stream keyword: its data is ready when exported
            capsule = obj.__dlpack__()
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    addr = get(capsule, b"dltensor")
    t = ctypes.cast(addr, ctypes.POINTER(_DLTensor)).contents
    shape = tuple(int(t.shape[i]) for i in range(t.ndim))
    key = (int(t.dtype.code), int(t.dtype.bits))
    if key not in _DL_DTYPES or t.dtype.lanes != 1:
        raise SpecError(f"{where}DLPack dtype code {key[0]} with {key[1]} bits x{t.dtype.lanes} is not supported; "
                        "pass float32/float16/int64/int32/int8/uint8/bool tensors")
    dtype = np.dtype(_DL_DTYPES[key])
    if t.strides:
        strides = [int(t.strides[i]) * dtype.itemsize for i in range(t.ndim)]
        if not _c_contiguous(shape, strides, dtype.itemsize):
            raise SpecError(f"{where}the DLPack tensor is not C-contiguous; make it contiguous first")
    ptr = int(t.data or 0) + int(t.byte_offset)
    return DeviceArray(ptr, shape, dtype, int(t.device.device_id), (obj, capsule)), int(t.device.device_type)


def device_array_of(obj: Any, where: str = "", stream: int | None = None) -> DeviceArray | None:
    """The device view of ``obj`` when it lives in GPU memory; None for host arrays. ``stream``: the consumer's
    CUDA stream handle (passed to DLPack producers)."""
    if isinstance(obj, np.ndarray):
        return None
    if hasattr(obj, "__cuda_array_interface__"):
        return from_cuda_array_interface(obj, where)
    if hasattr(obj, "__dlpack_device__") and hasattr(obj, "__dlpack__"):
        dev_type, _ = obj.__dlpack_device__()
        if int(dev_type) not in (KDL_CUDA, KDL_CUDA_MANAGED):
            return None
        view, _ = dlpack_view(obj, where, stream)
        return view
    return None
