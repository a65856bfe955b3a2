"""What edgemm cannot export, each failing in ONE line that names the op, the module path inside the user's model
and what to do (issue 24): data-dependent control flow, a torch op with no ONNX mapping, an ONNX op a target cannot
run, a data-dependent output shape, a non-tensor output, example inputs of the wrong dtype. The CLI cases run
``python -m edgemm`` in real subprocesses (exit 2, ``edgemm: error:`` and nothing else on stderr's last line; ``-v``
adds the traceback); the others go through ``edgemm.export`` and the real exporters and OpenVINO."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgemm  # noqa: E402
from edgemm.errors import EdgemmError  # noqa: E402

X = {"x": np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)}


def _api_error(model, tmp_path, example=X, targets=("onnxruntime",)) -> str:
    with pytest.raises(EdgemmError) as info:
        edgemm.export(model, example_inputs=example, output=tmp_path / "b", targets=list(targets), threads=2)
    msg = str(info.value)
    assert "\n" not in msg and not (tmp_path / "b").exists()
    return msg


RECIPE = '''
[model]
name = "user"
factory = "user_model:build"

[[inputs]]
name = "x"
dtype = "float32"
shape = ["batch", 8]

[[outputs]]
name = "y"

[export]
targets = ["onnxruntime"]
'''


def _cli(tmp_path: Path, code: str, *flags: str) -> subprocess.CompletedProcess:
    (tmp_path / "user_model.py").write_text(textwrap.dedent(code))
    (tmp_path / "model.toml").write_text(RECIPE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "edgemm", *flags, "export", str(tmp_path / "model.toml"), "-o",
                           str(tmp_path / "b")], capture_output=True, text=True, env=env, timeout=600)


def _one_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("edgemm: error: ") and "Traceback" not in run.stderr, run.stderr[-2000:]
    return last


BRANCHY = '''
import torch


class Gate(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # a Python branch on a tensor's value
            return x * 2
        return x - 1


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.proj(x))


def build():
    return Net()
'''


def test_data_dependent_control_flow_cli(tmp_path):
    line = _one_line(_cli(tmp_path, BRANCHY))
    assert "data-dependent control flow in model.gate (Gate) at user_model.py:7: `if x.sum() > 0:" in line, line
    assert "torch.where" in line and "edgemm -v export" in line
    verbose = _cli(tmp_path, BRANCHY, "-v")
    assert verbose.returncode == 2 and "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("edgemm: error: Net.forward has data-dependent control flow")


def test_non_tensor_output_cli(tmp_path):
    line = _one_line(_cli(tmp_path, '''
        import torch

        class Labeller(torch.nn.Module):
            def forward(self, x):
                return {"y": x * 2, "label": "positive"}

        def build():
            return Labeller()
    '''))
    assert line == ("edgemm: error: Labeller.forward returns a str as output 'label'; an exported graph returns tensors "
                    "only: return it as a tensor (torch.tensor(...)) or leave it out of forward()'s result")


class Growth(torch.nn.Module):
    def forward(self, x):
        return torch.cumprod(x, -1)  # torch 2.13's ONNX exporters have no translation for it


class Compound(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rates = torch.nn.ModuleList([torch.nn.Linear(8, 8), Growth()])

    def forward(self, x):
        return self.rates[1](self.rates[0](x))


def test_op_without_onnx_mapping(tmp_path):
    msg = _api_error(Compound(), tmp_path)
    assert msg.startswith("the op aten::cumprod (decomposed to prims::prod) in model.rates.1 (Growth) of Compound has no "
                          "ONNX mapping in opset 18: "), msg
    assert "compute it outside the model" in msg and "custom_translation_table" in msg and "edgemm -v export" in msg


class Finder(torch.nn.Module):
    def forward(self, x):
        return torch.nonzero(x > 0)  # one row per positive value: the size depends on the data


class Detector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.finder = Finder()

    def forward(self, x):
        return self.finder(x - 0.5)


def test_data_dependent_output_shape(tmp_path):
    msg = _api_error(Detector(), tmp_path)
    assert msg == ("cannot export Detector: output 'output_0' has a data-dependent shape (axis 0, from aten::nonzero in "
                   "model.finder (Finder)): its size depends on the values of the inputs, which the targets cannot take; "
                   "return a fixed-size tensor instead (e.g. torch.where(mask, x, 0) and the mask)")


class Tokens(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, ids):
        return self.head(self.embed(ids).mean(1))


def test_wrong_example_input_dtype(tmp_path):
    msg = _api_error(Tokens(), tmp_path, example={"ids": np.ones((2, 6), np.float32)})
    assert msg.startswith("Tokens.forward fails on the example inputs (ids [2, 6] float32) in model.embed (Embedding): "
                          "RuntimeError: Expected tensor for argument #1 'indices'"), msg
    assert "int64 for token ids and indices" in msg
    msg = _api_error(torch.nn.Sequential(torch.nn.Linear(8, 2)), tmp_path, example={"input": X["x"].astype(np.float64)})
    assert "(input [2, 8] float64) in model.0 (Linear)" in msg and "x.astype(np.float32)" in msg, msg


class Area(torch.nn.Module):
    def forward(self, x):
        return torch.linalg.det(x.reshape(-1, 2, 2)).reshape(x.shape[0], -1)  # ONNX Det: OpenVINO has no conversion


class Shapes(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)
        self.geometry = torch.nn.Sequential(Area())

    def forward(self, x):
        return self.geometry(self.proj(x))


@pytest.mark.openvino
def test_op_a_target_cannot_run(tmp_path):
    """The ONNX is valid and onnxruntime runs it; OpenVINO's ONNX frontend has no conversion for Det. The line names
    the ONNX op, the torch op and module it came from (from the exported program) and what to do."""
    import openvino as ov
    import onnxruntime as ort

    from edgemm.iospec import IOSpec, TensorSpec
    from edgemm.recipe import ExportConfig
    from edgemm.stages.export import export_onnx
    from edgemm.stages.export_errors import target_rejects

    model = Shapes().eval()
    args = (torch.randn(2, 8),)
    spec = IOSpec((TensorSpec("x", "float32", ("batch", 8)),), (TensorSpec("y", "float32", ("batch", 2)),))
    export_onnx(model, args, spec, tmp_path / "m.onnx", ExportConfig())
    ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": X["x"]})
    program = torch.export.export(model, args, strict=False)
    with pytest.raises(Exception) as info:
        ov.Core().read_model(str(tmp_path / "m.onnx"))
    line = target_rejects(info.value, "openvino", "Shapes", program)
    assert line == ("openvino cannot run the ONNX op Det (from aten::linalg_det in model.geometry.0 (Area)) of Shapes: "
                    "openvino has no implementation of it; compute that part outside the model, replace it with ops "
                    "openvino runs, or export without openvino (--target without it) (`edgemm -v export` shows "
                    "openvino's error)")
    assert target_rejects(RuntimeError("out of memory"), "openvino", "Shapes", program) is None


@pytest.mark.openvino
def test_export_to_a_target_that_cannot_run_an_op_is_that_line(tmp_path):
    """The same model through edgemm.export with both targets: the compile stage says which op OpenVINO rejects and
    where it came from, and no bundle is left behind."""
    import edgemm
    from edgemm.errors import EdgemmError

    with pytest.raises(EdgemmError) as info:
        edgemm.export(Shapes().eval(), example_inputs={"x": np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)},
                      output=tmp_path / "B", targets=["onnxruntime", "openvino"])
    line = str(info.value)
    assert line.startswith("openvino cannot run the ONNX op Det") and "graph main" in line and "\n" not in line, line
    assert not (tmp_path / "B").exists()
