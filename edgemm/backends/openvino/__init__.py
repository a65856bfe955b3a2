"""OpenVINO backend: IR (.xml/.bin) compiled for the CPU plugin."""
from .backend import OpenVinoBackend

BACKEND = OpenVinoBackend()
