"""LiteRT backend (TensorFlow Lite flatbuffers, XNNPACK on CPU): the ARM, Android and Raspberry Pi path.

Running needs only the LiteRT interpreter (``pip install 'edgemm[litert]'``); converting the torch model
(``edgemm export --target litert``) needs litert-torch (``pip install 'edgemm[litert-convert]'``).
"""
from .backend import LiteRtBackend

BACKEND = LiteRtBackend()
