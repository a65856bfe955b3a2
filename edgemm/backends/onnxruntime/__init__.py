"""ONNX Runtime backend (CPU execution provider; CUDA/TensorRT providers when installed)."""
from .backend import OnnxRuntimeBackend

BACKEND = OnnxRuntimeBackend()
