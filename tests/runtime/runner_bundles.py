"""Bundles for the runner tests (threads, feeds, weights on disk), built once per test session.

The session's avnet bundle (tests/conftest.py) has no int8 artifacts and the avnet int8 export takes minutes, so
int8 comes from the tiny two-input model: exported with ``int8=True`` for onnxruntime and openvino (the Q/DQ ONNX
each runs) and compiled to an OpenVINO int8 IR (~10 s in all)."""
from __future__ import annotations

from pathlib import Path

_BUILT: dict[str, Path] = {}


def tiny_int8_bundle(tmp_path_factory) -> Path:
    """onnx/model.int8.onnx, openvino/model.int8.onnx (Q/DQ) and openvino/model.int8.xml (IR) beside the fp32 ones."""
    if "tiny_int8" not in _BUILT:
        import importlib.util

        import edgemm
        from models.tiny import TinyAV, tiny_feeds, tiny_spec

        openvino = importlib.util.find_spec("openvino") is not None  # its tests skip without it; onnxruntime's still run
        out = tmp_path_factory.mktemp("tiny-int8") / "bundle"
        edgemm.export(TinyAV(0), spec=tiny_spec(), example_inputs=tiny_feeds(2), output=out, int8=True,
                      calibration=[tiny_feeds(1, seed=i) for i in range(100)],
                      targets=["onnxruntime", "openvino"] if openvino else ["onnxruntime"], speed_guard=False)
        if openvino:
            edgemm.compile(out, "openvino", precision="int8", threads=2)
        _BUILT["tiny_int8"] = out
    return _BUILT["tiny_int8"]

