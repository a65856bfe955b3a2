"""Small argument helpers shared by commands."""
from __future__ import annotations


def targets(value: str) -> list[str]:
    """``onnxruntime,openvino`` -> ["onnxruntime", "openvino"]."""
    return [t.strip() for t in value.split(",") if t.strip()]
