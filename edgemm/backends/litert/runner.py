"""Run a .tflite artifact in the LiteRT interpreter (XNNPACK delegate on CPU) under edgemm's one ``infer`` contract."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...errors import BundleError, SpecError
from ...frontends.native import Int8Codec
from ...iospec import IOSpec
from ...lazy import lazy_import
from ..base import Runner, RunnerOptions

INSTALL = "pip install 'edgemm[litert]' (the LiteRT interpreter, ai-edge-litert)"


def interpreter_module():
    """``ai_edge_litert.interpreter``, with the install hint when it is missing."""
    return lazy_import("ai_edge_litert.interpreter", f"the litert backend; {INSTALL}")


class _Interpreter:
    """One LiteRT interpreter with its tensors allocated, and the order of its inputs and outputs in the IOSpec's."""

    def __init__(self, model: bytes, path: Path, spec: IOSpec, threads: int | None):
        mod = interpreter_module()
        try:
            # XNNPACK is the interpreter's default CPU delegate; num_threads sizes its thread pool.
            self.interp = mod.Interpreter(model_content=model, num_threads=int(threads) if threads else None)
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # a corrupt or truncated flatbuffer, an op this interpreter lacks
            raise BundleError(f"the LiteRT interpreter cannot load {path} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                              "re-export the bundle with --target litert") from exc
        ins, outs = self.interp.get_input_details(), self.interp.get_output_details()
        if len(ins) != len(spec.inputs) or len(outs) != len(spec.outputs):
            raise SpecError(f"{path} has {len(ins)} inputs and {len(outs)} outputs, the bundle's IOSpec {len(spec.inputs)} and "
                            f"{len(spec.outputs)}; re-export the bundle")
        self.inputs = self._ordered(ins, spec.input_names, "args_")
        self.outputs = self._ordered(outs, spec.output_names, "output_")
        # Per call only what changes: the tensor indices, and for quantized inputs 1/scale, zero-point and range.
        self._set = [(d["index"], self._quantizer(d)) for d in self.inputs]
        self._get = [(d["index"], self._dequantizer(d)) for d in self.outputs]
        for detail, t in zip(self.inputs, spec.inputs):
            have = [int(x) for x in detail["shape"]]
            if len(have) != len(t.shape) or any(isinstance(d, int) and d != h for d, h in zip(t.shape[1:], have[1:])):
                raise SpecError(f"{path}: input {t.name!r} has shape {list(detail['shape'])}, the IOSpec says {list(t.shape)}; "
                                "re-export the bundle")

    @staticmethod
    def _ordered(details: list[dict], names: list[str], prefix: str) -> list[dict]:
        """Details in IOSpec order. litert-torch names a model's inputs ``args_<i>`` and its outputs ``output_<i>``
        in call order (inside a signature name such as ``serving_default_args_0:0``), and the interpreter's detail
        lists need not follow it; names the IOSpec uses directly are matched first."""
        by_name = {d["name"]: d for d in details}
        if all(n in by_name for n in names):
            return [by_name[n] for n in names]

        def position(d: dict) -> int:
            tail = d["name"].rsplit(prefix, 1)[-1]
            digits = "".join(ch for ch in tail.split(":")[0] if ch.isdigit())
            return int(digits) if digits and prefix in d["name"] else 10 ** 6 + d["index"]

        return sorted(details, key=position)

    @staticmethod
    def _quantizer(detail: dict):
        """A function float feed -> the input's integer type, written into a buffer this interpreter keeps (one
        C pass: edgemm.frontends.native.Int8Codec), or None for an input the model takes as it is."""
        dtype = np.dtype(detail["dtype"])
        scale, zero = detail["quantization"]
        if dtype not in (np.dtype(np.int8), np.dtype(np.uint8)) or scale == 0:
            return None
        codec = Int8Codec(dtype, scale, zero)
        buf = np.empty([int(x) for x in detail["shape"]], dtype)  # batch 1: the runner feeds one sample a call

        def quantize(array: np.ndarray) -> np.ndarray:
            if np.issubdtype(array.dtype, np.integer):
                return array.astype(dtype, copy=False)
            if array.dtype != np.float32 or not array.flags.c_contiguous:
                array = np.ascontiguousarray(array, dtype=np.float32)
            return codec.quantize(array, buf if array.shape == buf.shape else np.empty(array.shape, dtype))
        return quantize

    @staticmethod
    def _dequantizer(detail: dict):
        dtype = np.dtype(detail["dtype"])
        scale, zero = detail["quantization"]
        if dtype not in (np.dtype(np.int8), np.dtype(np.uint8)) or scale == 0:
            return None
        return Int8Codec(dtype, scale, zero).dequantize

    def run_one(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        interp = self.interp
        for (index, quantize), array in zip(self._set, feeds):
            interp.set_tensor(index, quantize(array) if quantize is not None else array)
        interp.invoke()
        return [get(interp.get_tensor(index)) if get is not None else interp.get_tensor(index) for index, get in self._get]


class LiteRtRunner(Runner):
    """Runs a .tflite file. The model is converted for batch 1 (fixed shapes: XNNPACK plans the whole graph once,
    weights packed, memory planned); a batch of N runs as N calls and the outputs are stacked.

    Thread-safe: a LiteRT interpreter holds its input and output tensors and must not run two calls at once, so
    concurrent ``infer`` calls each take an interpreter of their own from a pool that grows to the peak number of
    concurrent callers (the shape OpenVINO's runner uses: its measurement in benchmarks/results/runner-threads-*)."""

    backend = "litert"

    def __init__(self, path: Path, spec: IOSpec, options: RunnerOptions):
        super().__init__(spec)
        self._path = path
        try:
            self._model = path.read_bytes()  # in memory: overwriting the bundle's file never changes a loaded model
        except OSError as exc:
            raise BundleError(f"cannot read {path} ({exc.strerror or exc}); re-export the bundle") from exc
        self._threads = options.threads
        self._idle = [_Interpreter(self._model, path, spec, self._threads)]  # the first now: a bad file fails at load
        self._lock = threading.Lock()

    def _acquire(self) -> _Interpreter:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Interpreter(self._model, self._path, self.spec, self._threads)

    def _infer(self, feeds):
        if self._model is None:
            raise SpecError(f"this litert runner for {self._path.name} is closed; load the bundle again")
        arrays = [np.asarray(feeds[n]) for n in self.spec.input_names]
        batch = arrays[0].shape[0] if arrays and arrays[0].ndim else 1
        if any(a.ndim == 0 or a.shape[0] != batch for a in arrays):
            raise SpecError(f"the inputs of {self._path.name} must share their batch axis; got "
                            f"{[list(a.shape) for a in arrays]}")
        interp = self._acquire()
        if batch == 1:  # the deployed shape: no slicing, no stacking
            outs = interp.run_one(arrays)
            with self._lock:
                self._idle.append(interp)
            return outs
        rows = [interp.run_one([a[i:i + 1] for a in arrays]) for i in range(batch)]
        with self._lock:  # back to the pool only after clean runs: an interpreter whose invoke raised is dropped
            self._idle.append(interp)
        return [np.concatenate([r[k] for r in rows]) for k in range(len(rows[0]))]

    def close(self):
        with self._lock:
            self._idle.clear()
        self._model = None
