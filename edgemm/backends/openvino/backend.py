from __future__ import annotations

from pathlib import Path

from ...lazy import INSTALL_HINTS, lazy_import
from ...errors import BundleError, SpecError
from ...iospec import IOSpec
from ...trust import disable_telemetry
from ..base import Availability, Backend, Compiled, Runner, RunnerOptions, version_of


class OpenVinoRunner(Runner):
    backend = "openvino"

    def __init__(self, path: Path, spec: IOSpec, options: RunnerOptions):
        super().__init__(spec)
        ov = lazy_import("openvino", "the openvino backend")
        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if options.precision in ("fp32", "int8"):
            # The CPU plugin silently computes in bf16 where the CPU has it; fp32 and the float parts of int8 artifacts must not.
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = int(options.threads)
        try:
            self.compiled = core.compile_model(str(path), options.device.upper(), config)
        except Exception as exc:  # openvino raises RuntimeError with multi-line text
            raise BundleError(f"openvino cannot load {path} ({str(exc).splitlines()[0]}); re-export the bundle") from exc
        self.request = self.compiled.create_infer_request()
        self.inference_precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        names = [o.get_any_name() for o in self.compiled.outputs]
        if names != spec.output_names:
            raise SpecError(f"{path} has outputs {names}, the bundle's IOSpec says {spec.output_names}; re-export the bundle")
        self._outputs = list(self.compiled.outputs)

    def _infer(self, feeds):
        res = self.request.infer(feeds)
        return [res[o].copy() for o in self._outputs]

    def close(self):
        self.request = None
        self.compiled = None


class OpenVinoBackend(Backend):
    name = "openvino"
    formats = ("openvino-ir", "onnx")
    precisions = ("fp32", "fp16", "int8")
    description = "OpenVINO, CPU plugin (Intel/x86)"
    artifact_dir = "openvino"
    default_quantizer = "trt"  # symmetric int8 Q/DQ: fastest in OpenVINO's CPU plugin (benchmarks/results/quantizers-*)
    export_precisions = ("fp32", "fp16")
    load_priority = 20
    order = 20

    def availability(self) -> Availability:
        v = version_of("openvino")
        if v is None:
            return Availability(False, reason="openvino is not installed", install=INSTALL_HINTS["openvino"])
        ov = lazy_import("openvino")
        return Availability(True, version=v, devices=tuple(ov.Core().available_devices))

    def create_runner(self, path: Path, spec: IOSpec, options: RunnerOptions = RunnerOptions()) -> Runner:
        self.require()
        return OpenVinoRunner(path, spec, options)

    def compile(self, source: Path, out_dir: Path, spec: IOSpec, precision: str, *, source_precision: str = "fp32") -> list[Compiled]:
        """ONNX -> IR. ``fp16`` stores fp16-compressed weights (half the size; computed in the plugin's precision);
        an int8 Q/DQ ONNX becomes an int8 IR (OpenVINO keeps the FakeQuantize ops it reads from Q/DQ)."""
        self.require()
        disable_telemetry()  # openvino_telemetry forks a process per event; Ctrl-C must reach only edgemm
        ov = lazy_import("openvino")
        allowed = ("fp32", "fp16") if source_precision == "fp32" else ("int8",)
        if precision not in allowed:
            raise SpecError(f"openvino compiles a {source_precision} ONNX model to {' or '.join(allowed)}, not {precision!r}")
        try:
            model = ov.convert_model(str(source))
        except Exception as exc:  # openvino raises RuntimeError/OpConversionFailure with multi-line text
            raise BundleError(f"openvino cannot convert {source.name} ({str(exc).splitlines()[0]}); re-export the bundle") from exc
        stem = f"model.{precision}"
        ov.save_model(model, str(out_dir / f"{stem}.xml"), compress_to_fp16=(precision == "fp16"))
        return [Compiled(f"{stem}.xml", (f"{stem}.xml", f"{stem}.bin"), {"openvino": self.availability().version or "?"},
                         "openvino-ir", {"compiled_from": source_precision})]
