"""PyTorch eager backend: the fp32 reference and the benchmark baseline."""
from .backend import TorchBackend

BACKEND = TorchBackend()
