"""Issue 10: a model edgemm was not built around, through the CLI exactly as a user runs it.

``edgemm export model.pt2 --int8 --calib DIR --target onnxruntime`` with the speed guard on (the default), no labels:
the guard's candidates are checked by parity on held-out calibration samples; the result must exit 0 and stay close to
the user's own model on inputs it never saw. Whether INT8 is faster here is this machine's business: the test holds the
export to its own verdict (speed.slower <=> the line printed <=> load does not pick int8), not to a latency.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import edgemm
from edgemm.backends.base import RunnerOptions
from edgemm.compare import Comparator

from user_models import save_user_model

pytestmark = pytest.mark.slow


def test_user_pt2_exports_with_int8_and_stays_close_to_the_user_model(tmp_path):
    pt2, calib, held = save_user_model(tmp_path / "user")
    out = tmp_path / "bundle"
    root = str(Path(edgemm.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r = subprocess.run([sys.executable, "-m", "edgemm", "export", str(pt2), "--int8", "--calib", str(calib),
                        "--target", "onnxruntime", "-o", str(out)], capture_output=True, text=True, env=env, cwd=cwd,
                       timeout=1200)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    b = edgemm.Bundle.open(out)
    int8 = next(a for a in b.artifacts if a.precision == "int8")
    feeds = dict(np.load(held))
    cmp = Comparator(b.spec, feeds)
    ref = cmp.run_module(torch.export.load(str(pt2)))
    got = cmp.run_artifact("onnxruntime", out / int8.path, RunnerOptions(threads=2, precision="int8"))
    cos = min(v["cosine"] for v in cmp.parity(ref, got).values())
    agree = min(cmp.agreement(ref, got).values())
    assert cos >= 0.98 and agree >= 0.97, (cos, agree)
    g = onnx.load(str(out / int8.path)).graph
    inits = {t.name for t in g.initializer}
    assert sum(n.op_type == "QuantizeLinear" and n.input[0] not in inits for n in g.node) >= 2  # a real INT8 model
    speed = int8.extra["speed"]
    assert set(speed) >= {"vs_fp32", "batch", "slower"} and speed["batch"] == 1
    report = json.loads((out / "reports/speed.json").read_text())["targets"]["onnxruntime"]
    assert all(c["valid"] for c in report["candidates"] if c["chosen"])
    assert all(c["cosine"] is not None for c in report["candidates"])  # every candidate was checked
    said = "int8 is" in (r.stdout + r.stderr) and "slower" in (r.stdout + r.stderr)
    assert said == speed["slower"]
    if speed["slower"]:
        assert edgemm.load(b).precision != "int8"
    assert list(cwd.iterdir()) == []  # no profiler output or temporary file where the command ran
