"""TensorRT backend (NVIDIA GPUs / Jetson). Listed everywhere; usable where TensorRT and a GPU are."""
from .backend import TensorRTBackend

BACKEND = TensorRTBackend()
