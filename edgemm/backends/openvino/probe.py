"""Compile an int8 model for static input shapes in a child process before any runner of this process does.

OpenVINO's CPU plugin runs a model fastest compiled for the shapes it is fed (static shapes: memory planned once,
no shape inference per call; docs/targets/openvino.md quotes the gain on avnet and avnet_m). Its low-precision passes have also died
with SIGFPE compiling some int8 Q/DQ graphs at a static batch (OpenVINO 2026.4, ReshapeTransformation on a
MatMul -> Add -> Reshape head split): no exception, the process ends. An embedding application must never meet
that, so an int8 artifact is compiled static only where this probe, run at export, compiled it in a child process
under the same OpenVINO version; its answer is recorded in the artifact (``extra["runner"]["static_probe"]``).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from ...iospec import IOSpec

PROBE_TIMEOUT_S = 300.0

_CHILD = r"""
import json, sys
import openvino as ov
core = ov.Core()
model = core.read_model(sys.argv[1])
model.reshape(json.loads(sys.argv[2]))
core.compile_model(model, "CPU", json.loads(sys.argv[3]))
"""


def static_shapes(spec: IOSpec, batch: int = 1) -> dict[str, list[int]] | None:
    """Every input's shape at ``batch`` (None when an input has another dynamic axis: nothing static to compile)."""
    shapes = {}
    for t in spec.inputs:
        if any(isinstance(d, str) for d in t.shape[1:]):
            return None
        shapes[t.name] = [batch if isinstance(d, str) else d for d in t.shape]
    return shapes


def static_compile_failure(path: Path, shapes: dict[str, list[int]], config: dict | None = None,
                           timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why OpenVINO cannot compile ``path`` for these input shapes, found in a child process; None when it can."""
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), json.dumps(shapes), json.dumps(config or {})],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"compiling it for static shapes took over {timeout_s:g} s"
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return f"OpenVINO's compiler died with {name} compiling it for static shapes"
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return f"OpenVINO cannot compile it for static shapes ({tail[-1] if tail else f'exit code {proc.returncode}'})"
