"""What an exported graph cannot hold, each in one line naming the op, the module path inside the user's model
and what to do: data-dependent control flow, an op with no ONNX mapping, a data-dependent output shape;
`edgemm -v export` shows the exporter's traceback behind the line."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgemm  # noqa: E402
from edgemm.cli import main  # noqa: E402
from edgemm.errors import EdgemmError  # noqa: E402

X = {"x": np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)}


class Gate(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # branches on a value
            return x * 2
        return x - 1


class Branchy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.block = torch.nn.Sequential(torch.nn.ReLU(), Gate())

    def forward(self, x):
        return self.block(self.proj(x))


class Spectrum(torch.nn.Module):
    def forward(self, x):
        m = x.reshape(x.shape[0], 2, 2)
        return torch.linalg.eigvalsh(m @ m.transpose(1, 2))  # no ONNX translation in either exporter


class WithSpectrum(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.ModuleDict({"spectrum": Spectrum()})

    def forward(self, x):
        return self.encoder["spectrum"](x) + 1


class Positives(torch.nn.Module):
    def forward(self, x):
        return x[x > 0]  # as many values as are positive: the size depends on the data


class Selecting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.select = Positives()

    def forward(self, x):
        return self.select(x * 3)


def _error(model, tmp_path) -> str:
    with pytest.raises(EdgemmError) as info:
        edgemm.export(model, example_inputs=X, output=tmp_path / "b", targets=["onnxruntime"], threads=2)
    assert not (tmp_path / "b").exists()
    msg = str(info.value)
    assert "\n" not in msg
    assert info.value.__cause__ is not None or "data-dependent shape" in msg  # -v shows the exporter's traceback
    return msg


def test_data_dependent_control_flow(tmp_path):
    msg = _error(Branchy(), tmp_path)
    assert "data-dependent control flow" in msg
    assert "model.block.1 (Gate)" in msg and "test_export_failures.py:" in msg and "`if x.sum() > 0:" in msg
    assert "torch.where" in msg and "edgemm -v export" in msg


def test_an_op_with_no_onnx_mapping(tmp_path):
    msg = _error(WithSpectrum(), tmp_path)
    assert "linalg_eigh" in msg and "has no ONNX mapping in opset 18" in msg
    assert "model.encoder.spectrum (Spectrum)" in msg
    assert "outside the model" in msg and "custom_translation_table" in msg and "edgemm -v export" in msg


def test_a_data_dependent_output_shape(tmp_path):
    msg = _error(Selecting(), tmp_path)
    assert "output 'output_0' has a data-dependent shape" in msg
    assert "aten::index" in msg and "model.select (Positives)" in msg and "torch.where" in msg


def test_verbose_shows_the_exporters_traceback(tmp_path, capsys, monkeypatch):
    """The CLI: one line without -v; with -v the exporter's traceback before the same line."""
    (tmp_path / "user_model.py").write_text(textwrap.dedent('''
        import torch

        class Gate(torch.nn.Module):
            def forward(self, x):
                if x.mean() > 0:
                    return x
                return -x

        def build():
            return Gate()
    '''))
    (tmp_path / "model.toml").write_text(textwrap.dedent('''
        [model]
        name = "gate"
        factory = "user_model:build"

        [[inputs]]
        name = "x"
        dtype = "float32"
        shape = ["batch", 4]

        [[outputs]]
        name = "y"

        [export]
        targets = ["onnxruntime"]
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["-q", "export", str(tmp_path / "model.toml"), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data-dependent control flow in model (Gate) at user_model.py:6" in err, err
    assert main(["-v", "export", str(tmp_path / "model.toml"), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "GuardOnDataDependentSymNode" in err
    assert err.strip().splitlines()[-1].startswith("edgemm: error: Gate.forward has data-dependent control flow")
