"""A third-party edgemm backend: ONNX Runtime on the CPU, registered as ``ort-plugin``.

It uses only edgemm's public backend API (``edgemm.backends``) and calls onnxruntime itself.
What it declares is all edgemm needs to export, quantize, verify, benchmark and load for it:
the format it runs (plain ONNX, so the bundle's fp32 ONNX is its fp32 artifact), its folder in a
bundle, its device (CPU: INT8 candidates are timed on it), and its INT8 scheme (``ort``: uint8
activations, int8 per-channel weights).
"""
from __future__ import annotations

from pathlib import Path

from edgemm.backends import Availability, Backend, Runner, RunnerOptions, version_of


class OrtPluginRunner(Runner):
    backend = "ort-plugin"

    def __init__(self, path: Path, spec, options: RunnerOptions):
        super().__init__(spec)
        import onnxruntime as ort

        so = ort.SessionOptions()
        if options.threads:
            so.intra_op_num_threads = options.threads
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def _infer(self, feeds):
        return self.session.run(self.spec.output_names, feeds)

    def close(self):
        self.session = None


class OrtPluginBackend(Backend):
    name = "ort-plugin"
    formats = ("onnx",)
    precisions = ("fp32", "int8")
    description = "example plugin: ONNX Runtime CPU via edgemm's public backend API"
    device = "cpu"
    artifact_dir = "ort-plugin"
    default_quantizer = "ort"

    def availability(self) -> Availability:
        v = version_of("onnxruntime")
        if v is None:
            return Availability(False, reason="onnxruntime is not installed", install="pip install onnxruntime")
        return Availability(True, version=v, devices=("cpu",))

    def create_runner(self, path: Path, spec, options: RunnerOptions = RunnerOptions()) -> Runner:
        self.require()
        return OrtPluginRunner(path, spec, options)
