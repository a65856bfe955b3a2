"""edgemm: trained multimodal PyTorch models to the edge (ONNX, OpenVINO, TensorRT) with proof."""
from __future__ import annotations

from .version import __version__

from .errors import EdgemmError  # noqa: E402

__all__ = ["EdgemmError", "IOSpec", "TensorSpec", "export", "compile", "verify", "load", "Bundle", "Runtime", "Stream", "benchmark", "__version__"]


def __getattr__(name: str):
    # Keep `import edgemm` light (numpy, torch and onnx are imported only when a name needs them): the CLI's
    # first fraction of a second then holds no import that Ctrl-C could interrupt outside its handler.
    if name in ("IOSpec", "TensorSpec"):
        from . import iospec

        return getattr(iospec, name)
    if name == "export":
        from .configure import export

        return export
    if name == "compile":
        from .stages.compile import compile_bundle

        return compile_bundle
    if name == "verify":
        from .stages.verify import verify

        return verify
    if name in ("load", "Runtime"):
        from .runtime import runtime

        return getattr(runtime, name)
    if name == "Stream":
        from .runtime.stream import Stream

        return Stream
    if name == "benchmark":
        from .bench.run import benchmark

        return benchmark
    if name == "Bundle":
        from .bundle import Bundle

        return Bundle
    raise AttributeError(f"module 'edgemm' has no attribute {name!r}")
