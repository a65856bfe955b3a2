from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from ...errors import BundleError, SpecError
from ...iospec import IOSpec
from ..base import Availability, Backend, Compiled, Runner, RunnerOptions, version_of
from .options import LiteRtOptions
from .runner import INSTALL, LiteRtRunner


def _toolchain() -> dict[str, str]:
    return {"litert-torch": version_of("litert-torch") or "?", "ai-edge-litert": version_of("ai-edge-litert") or "?",
            "torch": version_of("torch") or "?"}


class LiteRtBackend(Backend):
    """LiteRT's interpreter with its XNNPACK delegate. Unlike the ONNX targets, a LiteRT artifact is converted from
    the torch model itself (litert-torch), not from the ONNX file: ``compile_module`` is the conversion; ``compile``
    (the ONNX-based contract every target has) converts the bundle's torch reference program found beside it."""

    name = "litert"
    formats = ("tflite",)
    precisions = ("fp32", "int8")
    description = "LiteRT (TensorFlow Lite) interpreter, XNNPACK on CPU (x86, ARM, Android, Raspberry Pi)"
    artifact_dir = "litert"
    export_precisions = ("fp32",)
    converts_module = True  # the compile stage hands it the deployed torch model (compile_module), not the ONNX file
    default_quantizer = "litert"  # litert-torch's PT2E quantizer inside compile_module (the quantizer registry's "litert")
    options = LiteRtOptions  # [compile.litert]
    load_priority = 30
    order = 40

    def availability(self) -> Availability:
        v = version_of("ai-edge-litert")
        if v is None:
            return Availability(False, reason="the LiteRT interpreter (ai-edge-litert) is not installed", install=INSTALL)
        return Availability(True, version=v, devices=("cpu",))

    def converter_availability(self) -> Availability:
        """Whether this machine can convert (litert-torch), beside running."""
        v = version_of("litert-torch")
        if v is None:
            from .convert import CONVERT_INSTALL

            return Availability(False, reason="litert-torch (the converter) is not installed", install=CONVERT_INSTALL)
        return Availability(True, version=v, devices=("cpu",))

    def create_runner(self, path: Path, spec: IOSpec, options: RunnerOptions = RunnerOptions()) -> Runner:
        self.require()
        return LiteRtRunner(path, spec, options)

    def compile_module(self, module, args: Sequence, out_dir: Path, spec: IOSpec, precision: str, *,
                       calibration: Iterable[tuple] | None = None, method: str = "minmax", float_parts: Iterable[str] = (),
                       exclude_ops: Iterable[str] = (), options: LiteRtOptions | None = None) -> list[Compiled]:
        """Convert a torch model (``args``: example tensors in its argument order) to ``out_dir/model.<precision>.tflite``.
        int8: static PT2E quantization with ranges from ``calibration`` (tuples of tensors); ``float_parts`` (submodule
        names) and ``exclude_ops`` (ONNX op types) stay float, as edgemm's precision policy says."""
        self.require()
        if self.converter_availability().available is False:
            from ...errors import BackendUnavailable

            av = self.converter_availability()
            raise BackendUnavailable(f"backend 'litert' cannot convert here: {av.reason}; install it with: {av.install}")
        from .convert import convert_fp32, convert_int8

        opts = options or LiteRtOptions()
        if precision not in self.precisions:
            raise SpecError(f"litert converts to {' or '.join(self.precisions)}, not {precision!r}")
        if any(t.dtype not in ("float32", "int64", "int32") for t in spec.inputs):
            raise SpecError(f"litert takes float32 and integer inputs; this model has {[t.dtype for t in spec.inputs]}")
        stem = f"model.{precision}"
        out = Path(out_dir) / f"{stem}.tflite"
        out.parent.mkdir(parents=True, exist_ok=True)
        if precision == "fp32":
            convert_fp32(module, args, out)
            extra = {"compiled_from": "torch", "batch": 1}
        else:
            if calibration is None:
                raise SpecError("litert int8 needs calibration data; pass --calib or set [data] calibration")
            from ...torchutil import dynamic_shapes

            convert_int8(module, args, out, calibration, dynamic=dynamic_shapes(spec), per_channel=opts.per_channel, method=method,
                         calibration_batch=opts.calibration_batch, float_parts=float_parts,
                         exclude_ops=exclude_ops)
            extra = {"compiled_from": "torch", "batch": 1, "quantizer": "litert-torch pt2e", "calibration_method": method, "per_channel": opts.per_channel,
                     "kept_float": {"parts": list(float_parts), "ops": list(exclude_ops)}}
        return [Compiled(out.name, (out.name,), _toolchain(), "tflite", extra)]

    def compile(self, source: Path, out_dir: Path, spec: IOSpec, precision: str, *, source_precision: str = "fp32",
                options: LiteRtOptions | None = None) -> list[Compiled]:
        """The ONNX-based compile contract: ``source`` is the bundle's fp32 ONNX; litert converts the torch reference
        program saved beside it (``reference/model.pt2`` of the same graph) instead, with torch's example inputs."""
        if precision != "fp32" or source_precision != "fp32":
            raise SpecError("litert int8 is made at export from the torch model and calibration data: "
                            "`edgemm export ... --int8 --target litert`")
        program_path = Path(source).parent.parent / "reference" / "model.pt2"
        if not program_path.is_file():
            raise BundleError(f"litert converts the bundle's torch reference program, and {program_path} is missing; "
                              "re-export the bundle with --target litert")
        from ...torchload import load_torch_program
        from ...torchutil import example_args

        program = load_torch_program(program_path, what=f"the bundle's torch reference program {program_path}")
        args = example_args(spec, spec.example_feeds(batch=1))
        return self.compile_module(program.module(), args, out_dir, spec, precision, options=options)
