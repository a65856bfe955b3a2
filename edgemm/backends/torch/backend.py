from __future__ import annotations

from pathlib import Path

import numpy as np

from ...lazy import INSTALL_HINTS, lazy_import
from ...iospec import IOSpec
from ..base import Availability, Backend, Runner, RunnerOptions, version_of


def _canonical(a: np.ndarray) -> np.ndarray:
    """C-contiguous, aligned and writeable with real strides: numpy calls x[None] contiguous although its new axis
    has stride 0, and PyTorch's convolutions run 10x slower on such views; ``torch.from_numpy`` warns on a
    read-only array (a tensor over it could be written)."""
    a = np.ascontiguousarray(a)
    return a.copy() if 0 in a.strides or not a.flags.writeable or not a.flags.aligned else a


class TorchRunner(Runner):
    """Runs a module (the user's original or a bundle's torch.export program) in eager mode. Thread-safe: a call
    only reads the module's parameters (eval mode; ``no_grad`` holds per thread), so threads need no lock
    (tests/runtime/test_runner_threads.py checks 8 threads against serial outputs). A user's module whose
    forward writes its own state is the exception, and the user's to guard."""

    backend = "torch"

    def __init__(self, module, spec: IOSpec, options: RunnerOptions):
        super().__init__(spec)
        self._torch = lazy_import("torch")
        self._threads_before = self._torch.get_num_threads()  # torch's thread count is process-global: restored on close()
        if options.threads:
            self._torch.set_num_threads(options.threads)
        self.module = module

    def _infer(self, feeds):
        torch = self._torch
        args = [torch.from_numpy(_canonical(feeds[n])) for n in self.spec.input_names]
        with torch.no_grad():
            out = self.module(*args)
        if isinstance(out, torch.Tensor):
            out = (out,)
        if isinstance(out, dict):
            out = [out[n] for n in self.spec.output_names]
        return [o.detach().cpu().numpy() for o in out]

    def close(self) -> None:
        if self.module is not None:
            self._torch.set_num_threads(self._threads_before)
            self.module = None


class TorchBackend(Backend):
    name = "torch"
    formats = ("torch-export",)
    precisions = ("fp32",)
    description = "PyTorch eager (the fp32 reference and baseline)"
    artifact_dir = "reference"
    reference = True
    load_priority = 90
    order = 0

    def availability(self) -> Availability:
        v = version_of("torch")
        if v is None:
            return Availability(False, reason="torch is not installed", install=INSTALL_HINTS["torch"])
        return Availability(True, version=v, devices=("cpu",))

    def create_runner(self, path: Path, spec: IOSpec, options: RunnerOptions = RunnerOptions()) -> Runner:
        """Load a bundle's torch.export program: it is unpickled, so only with opt-in (see edgemm.trust)."""
        self.require()
        return TorchRunner(load_program(path).module(), spec, options)

    def runner_for_module(self, module, spec: IOSpec, options: RunnerOptions = RunnerOptions()) -> Runner:
        """Run a live nn.Module (the user's original model) under the same contract."""
        # Graph modules made by torch.export (ExportedProgram.module(), PT2E-quantized models) refuse .eval(): their
        # mode was fixed at export. A user's plain nn.Module is put in eval mode.
        torch = lazy_import("torch")
        if not isinstance(module, torch.fx.GraphModule):
            module = module.eval()
        return TorchRunner(module, spec, options)


def load_program(path: Path, trust_code: bool | None = None):
    """``torch.export.load`` behind the trust check (``--trust-code``); a corrupt archive is one BundleError line."""
    from ...torchload import load_torch_program

    return load_torch_program(path, trust_code=trust_code)
