"""Running a TensorRT engine: tensor-name I/O (TensorRT 10/11 ``IExecutionContext``: ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``), one CUDA stream, pinned host staging buffers, device buffers that grow
to the largest shapes seen, optional CUDA-graph replay, and inputs already on the GPU used in place.

Per call: pick the optimization profile that covers the feed (``set_optimization_profile_async`` when it changes),
set input shapes, copy host inputs through pinned buffers (device inputs are bound by address, no copy), bind
outputs, execute, copy outputs back, synchronise once. One lock serialises calls: the execution context, its
buffers and the stream are shared (the runner contract: thread-safe like every runner).

CUDA graphs (developer guide, "CUDA Graphs"): a captured graph fixes input shapes, tensor addresses and the
profile, so it is keyed on them; after a change the engine runs once uncaptured (TensorRT updates its state on the
first enqueue after a shape change), then the next enqueue is captured. Engines that cannot be captured run
uncaptured, with one warning.
"""
from __future__ import annotations

import threading
import time
from typing import Mapping

import numpy as np

from ...errors import BundleError, EdgemmError, SpecError, UnsupportedFeature, one_line
from ...log import logger
from ..base import Runner
from .cuda import CudaError, cuda_api
from .device_arrays import DeviceArray, device_array_of
from .profiles import Profile, select_profile


def split_feeds(feeds: Mapping[str, object], stream: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, DeviceArray]]:
    """Host feeds (numpy) and device feeds (CUDA array interface / DLPack on a GPU; ``stream``: the runner's)."""
    host, device = {}, {}
    for name, value in feeds.items():
        dev = device_array_of(value, f"input {name!r}: ", stream)
        if dev is not None:
            device[name] = dev
        else:
            host[name] = value
    return host, device


def graph_key(profile: int, shapes: Mapping[str, tuple], addresses: Mapping[str, int]) -> tuple:
    """What a captured CUDA graph depends on: a change in any of it needs a new capture."""
    return profile, tuple(sorted((k, tuple(v)) for k, v in shapes.items())), tuple(sorted(addresses.items()))


class _Buffers:
    """Device and pinned host buffers per tensor name, grown (never shrunk) to the largest size asked for."""

    def __init__(self, api):
        self.api = api
        self.device: dict[str, tuple[int, int]] = {}  # name -> (ptr, capacity)
        self.pinned: dict[str, tuple[np.ndarray, object, int]] = {}  # name -> (uint8 view, handle, capacity)

    def device_ptr(self, name: str, nbytes: int) -> int:
        ptr, cap = self.device.get(name, (0, -1))
        if nbytes > cap:
            if cap >= 0:
                self.api.free_device(ptr)
            ptr, cap = self.api.alloc_device(nbytes), max(nbytes, 1)
            self.device[name] = (ptr, cap)
        return ptr

    def host(self, name: str, nbytes: int, dtype: np.dtype, shape: tuple) -> np.ndarray:
        view, handle, cap = self.pinned.get(name, (None, None, -1))
        if nbytes > cap:
            if view is not None:
                self.api.free_pinned(handle)
            view, handle = self.api.alloc_pinned(nbytes)
            cap = max(nbytes, 1)
            self.pinned[name] = (view, handle, cap)
        return view[:nbytes].view(dtype).reshape(shape)

    def free(self) -> None:
        for ptr, _ in self.device.values():
            self.api.free_device(ptr)
        for _, handle, _ in self.pinned.values():
            self.api.free_pinned(handle)
        self.device.clear()
        self.pinned.clear()


class TensorRTRunner(Runner):
    backend = "tensorrt"

    def __init__(self, engine: bytes, spec, *, device_index: int = 0, cuda_graph: bool = False, label: str = "engine"):
        super().__init__(spec)
        from .build import import_tensorrt, make_logger

        self._trt, _ = import_tensorrt()
        trt = self._trt
        self._api = cuda_api(device_index)
        if cuda_graph and not self._api.can_capture:
            raise UnsupportedFeature(f"CUDA-graph capture needs cuda-python ({self._api.name} has no capture API here); "
                                     "install it with: pip install cuda-python, or run without cuda_graph")
        self._lock = threading.Lock()
        self._label = label
        self._log = make_logger(trt)
        with self._api.active():
            self._runtime = trt.Runtime(self._log)
            self._engine = self._runtime.deserialize_cuda_engine(engine)
            if self._engine is None:
                why = self._log.errors[-1] if self._log.errors else "no reason given"
                raise BundleError(f"TensorRT cannot load {label} ({one_line(why)[:200]}); rebuild it with `edgemm compile "
                                  "BUNDLE --target tensorrt` on this machine")
            self._context = self._engine.create_execution_context()
            self._stream = self._api.stream_create()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        if sorted(self._inputs) != sorted(spec.input_names) or not set(spec.output_names) <= set(self._outputs):
            raise SpecError(f"{label} has inputs {self._inputs} and outputs {self._outputs}, the bundle's IOSpec says "
                            f"{spec.input_names} -> {spec.output_names}; rebuild the engine from this bundle")
        dynamic = [n for n in self._inputs if any(d < 0 for d in self._engine.get_tensor_shape(n))]
        self._profiles = [Profile({n: tuple(tuple(s) for s in self._engine.get_tensor_profile_shape(n, p)) for n in dynamic})
                          for p in range(self._engine.num_optimization_profiles)] if dynamic else []
        self._profile = 0
        self._buffers = _Buffers(self._api)
        self.cuda_graph = cuda_graph
        self._graph = None  # (graph, exec graph)
        self._graph_key = None
        self._graph_failed = False

    # ------------------------------------------------------------------ feeds

    def infer(self, feeds: Mapping[str, object], check: bool = True) -> dict[str, np.ndarray]:
        """Like every runner's ``infer``; feeds may also be GPU arrays (``__cuda_array_interface__`` or DLPack),
        bound in place without a copy."""
        if not isinstance(feeds, Mapping):
            raise SpecError(f"feeds must be a dict of input name -> array, got {type(feeds).__name__}")
        host, device = split_feeds(feeds, self._api.stream_handle(self._stream))
        if check:
            # device arrays are checked through memory-less stand-ins of their shape and dtype
            checked = self.spec.check_feeds({**host, **{n: d.placeholder() for n, d in device.items()}})
            host = {n: checked[n] for n in host}
        t0 = time.perf_counter()
        outs = self._run(host, device)
        self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        return dict(zip(self.spec.output_names, outs))

    def _infer(self, feeds):
        return self._run(feeds, {})

    # ------------------------------------------------------------------ execution

    def _run(self, host: dict[str, np.ndarray], device: dict[str, DeviceArray]) -> list[np.ndarray]:
        if self._context is None:
            raise EdgemmError(f"the TensorRT runner for {self._label} is closed; load the bundle again")
        api, ctx, stream = self._api, self._context, self._stream
        shapes = {n: tuple(a.shape) for n, a in host.items()} | {n: d.shape for n, d in device.items()}
        with self._lock, api.active():
            if self._profiles:
                p = select_profile(self._profiles, shapes)
                if p != self._profile:
                    ctx.set_optimization_profile_async(p, api.stream_handle(stream))
                    self._profile = p
            for name, shape in shapes.items():
                if not ctx.set_input_shape(name, shape):
                    raise SpecError(f"TensorRT refuses shape {list(shape)} for input {name!r}; feed a shape inside the engine's profiles")
            addresses: dict[str, int] = {}
            for name, arr in host.items():
                arr = np.ascontiguousarray(arr, dtype=self._dtypes[name])  # e.g. int64 tokens for an int32 engine input
                staged = self._buffers.host(name, arr.nbytes, arr.dtype, arr.shape)
                np.copyto(staged, arr)
                addresses[name] = self._buffers.device_ptr(name, arr.nbytes)
                api.htod(addresses[name], staged.reshape(-1).view(np.uint8), arr.nbytes, stream)
            for name, dev in device.items():
                if dev.dtype != self._dtypes[name]:
                    raise SpecError(f"input {name!r} on the device is {dev.dtype}, the engine takes {self._dtypes[name]}; convert it first")
                if dev.sync_stream is not None:  # the producer's writes may still be in flight on its stream
                    api.sync(dev.sync_stream)
                addresses[name] = dev.ptr
            out_shapes = {}
            for name in self._outputs:
                shape = tuple(ctx.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise UnsupportedFeature(f"output {name!r} has a data-dependent shape {list(shape)}; edgemm's TensorRT runner "
                                             "runs models whose output shapes follow from the input shapes")
                out_shapes[name] = shape
                addresses[name] = self._buffers.device_ptr(name, int(np.prod(shape, dtype=np.int64)) * self._dtypes[name].itemsize)
            for name, ptr in addresses.items():
                ctx.set_tensor_address(name, ptr)
            self._execute(shapes, addresses)
            results = {}
            for name in self.spec.output_names:
                dtype, shape = self._dtypes[name], out_shapes[name]
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                staged = self._buffers.host(name, nbytes, dtype, shape)
                api.dtoh(staged.reshape(-1).view(np.uint8), addresses[name], nbytes, stream)
                results[name] = staged
            api.sync(stream)
            return [results[n].copy() for n in self.spec.output_names]  # the pinned buffers are reused next call

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._api.stream_handle(self._stream)):
            why = self._log.errors[-1] if self._log.errors else "no reason given"
            raise EdgemmError(f"TensorRT failed to run {self._label}: {one_line(why)[:200]}")

    def _execute(self, shapes, addresses) -> None:
        if not self.cuda_graph or self._graph_failed:
            self._enqueue()
            return
        key = graph_key(self._profile, shapes, addresses)
        if key == self._graph_key and self._graph is not None:
            self._api.graph_launch(self._graph[1], self._stream)
            return
        self._drop_graph()
        self._enqueue()  # runs this call and lets TensorRT settle its state for the new shapes before capture
        self._api.sync(self._stream)
        graph = None
        try:
            self._api.capture_begin(self._stream)
            try:
                self._enqueue()
            finally:
                graph = self._api.capture_end(self._stream)
            self._graph = (graph, self._api.graph_instantiate(graph))
            self._graph_key = key
        except (CudaError, EdgemmError) as exc:
            if graph is not None and self._graph is None:
                self._api.graph_destroy(graph, None)
            self._graph_failed = True
            logger.warning("TensorRT engine %s cannot be captured in a CUDA graph (%s); running it uncaptured", self._label,
                           one_line(exc)[:200])

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._api.graph_destroy(*self._graph)
        self._graph, self._graph_key = None, None

    def close(self) -> None:
        with self._lock:
            if self._context is None:
                return
            with self._api.active():
                self._drop_graph()
                self._buffers.free()
                self._api.stream_destroy(self._stream)
            self._context = self._engine = self._runtime = None
