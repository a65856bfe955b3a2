"""Import optional heavy dependencies on first use, with an install hint when missing."""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import BackendUnavailable

INSTALL_HINTS = {
    "torch": "pip install torch==2.13.0",
    "openvino": "pip install 'edgemm[openvino]'",
    "tensorrt": "pip install 'edgemm[tensorrt]' (TensorRT wheels come from NVIDIA's index: pip install tensorrt --extra-index-url https://pypi.nvidia.com)",
    "onnxruntime": "pip install onnxruntime",
    "neural_compressor": "pip install 'neural-compressor[pt]' (or: pip install 'edgemm[inc]')",
}


def lazy_import(module: str, purpose: str = "") -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        hint = INSTALL_HINTS.get(top, f"pip install {top}")
        what = f" (needed for {purpose})" if purpose else ""
        raise BackendUnavailable(f"python package {top!r} is not installed{what}: {exc}; install it with: {hint}") from exc
