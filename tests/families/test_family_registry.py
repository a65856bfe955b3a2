"""The family registry: listing without the model libraries, recognition of modules and folders, the generic
nn.Module path, folders no family takes (one line), torch.save folders (refused without trust), a family from a
third-party package through the edgemm.families entry point, and outputs with a second batch-coupled axis."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgemm  # noqa: E402
from edgemm.bundle import Bundle  # noqa: E402
from edgemm.cli import main  # noqa: E402
from edgemm.errors import EdgemmError, UntrustedCode  # noqa: E402
from edgemm.families import resolve_module  # noqa: E402
from edgemm.families.base import FamilyGraph  # noqa: E402
from edgemm.families.registry import all_families  # noqa: E402
from edgemm.families.resolve import batch_coupling, choose_outputs  # noqa: E402
from edgemm.iospec import TensorSpec  # noqa: E402
from edgemm.trust import allow_code  # noqa: E402

from models.paths import ROOT  # noqa: E402
from timm_like import TimmLikeNet  # noqa: E402


def install(site, packages: dict) -> None:
    """Each package as a real installed distribution: its module and its .dist-info (entry_points.txt) beside it."""
    for pkg, (groups, source) in packages.items():
        (site / pkg).mkdir(parents=True)
        (site / pkg / "__init__.py").write_text(source)
        info = site / f"{pkg}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {pkg}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("".join(f"[{g}]\n{lines}\n\n" for g, lines in groups.items()))


def env_with(site) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgemm: error: ") and "\n" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def test_listing_families_imports_no_model_library():
    code = ("import sys\nfrom edgemm.families.registry import all_families\nfrom edgemm.families import resolve_module\n"
            "import torch\nnames = list(all_families())\nassert resolve_module(torch.nn.Linear(2, 2)) is None\n"
            "print(names, sorted(m for m in ('transformers', 'timm', 'torchvision', 'safetensors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['hf-clip', 'hf-wav2vec2', 'hf-whisper', 'timm'] []"


def test_plain_modules_take_the_generic_path():
    from models.tiny import TinyAV

    from edgemm.families.registry import family_for_module

    assert resolve_module(torch.nn.Linear(3, 2)) is None and family_for_module(TinyAV()) is None
    assert not any(f.recognises_module(TinyAV()) for f in all_families().values())
    assert resolve_module("model.pt2") is None and resolve_module(42) is None
    assert set(all_families()) >= {"hf-clip", "hf-wav2vec2", "hf-whisper", "timm"}


@pytest.mark.parametrize("files, words", [
    ({"config.json": {"model_type": "bert", "architectures": ["BertModel"]}, "model.safetensors": b"x"},
     ["no model family recognises", "model_type 'bert'", "hf-clip", "edgemm.export(model"]),
    ({"notes.txt": "hello"}, ["no model family recognises", "notes.txt"]),
    ({}, ["no model family recognises", "no files"]),
])
def test_a_folder_no_family_recognises_is_one_line(tmp_path, capsys, files, words):
    folder = tmp_path / "model"
    folder.mkdir()
    for name, content in files.items():
        p = folder / name
        p.write_bytes(content if isinstance(content, bytes) else (json.dumps(content) if isinstance(content, dict) else content).encode())
    assert main(["export", str(folder), "-o", str(tmp_path / "b")]) == 2
    _one_line_error(capsys, *words)
    assert not (tmp_path / "b").exists()


def test_a_broken_config_is_one_line(tmp_path, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    assert main(["export", str(folder), "-o", str(tmp_path / "b")]) == 2
    _one_line_error(capsys, "config.json", "not valid JSON", "re-save")


def test_a_torch_save_folder_is_refused_without_trust(tmp_path, capsys):
    folder = tmp_path / "saved"
    folder.mkdir()
    torch.save(TimmLikeNet(), folder / "model.pt")
    assert main(["export", str(folder), "-o", str(tmp_path / "b")]) == 2
    err = _one_line_error(capsys, "torch.save", "model.pt", "unpickle", "--trust-code")
    assert "allow_code" in err
    assert not (tmp_path / "b").exists()
    with pytest.raises(UntrustedCode):
        edgemm.export(folder, output=tmp_path / "b")
    # trusted: loaded, recognised by its timm pretrained_cfg, exported
    with allow_code():
        b = edgemm.export(folder, output=tmp_path / "b", targets=["onnxruntime"], threads=2)
    assert b.spec.input_names == ["pixel_values"] and b.spec.output_names == ["logits"]
    assert "torch.save module" in b.manifest["model"]["source"] and b.manifest["model"]["sha256"]


def test_a_trusted_torch_save_folder_of_an_unknown_module_is_one_line(tmp_path):
    folder = tmp_path / "saved"
    folder.mkdir()
    torch.save(torch.nn.Linear(3, 2), folder / "model.pt")
    with allow_code(), pytest.raises(EdgemmError, match=r"no model family recognises.*example_inputs"):
        edgemm.export(folder, output=tmp_path / "b")
    torch.save(torch.nn.Linear(3, 2).state_dict(), folder / "model.pt")
    with allow_code(), pytest.raises(EdgemmError, match=r"state_dict.*not a module"):
        edgemm.export(folder, output=tmp_path / "b")


class _Pairs(torch.nn.Module):
    """Per-sample embeddings, a batch x batch similarity (two batch axes) and a batch-wide mean (no batch axis)."""

    output_names = ()

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)

    def outputs(self, x):
        e = self.proj(x)
        return {"embeds": e, "similarity": e @ e.T, "mean": e.mean(0)}

    def forward(self, x):
        named = self.outputs(x)
        return tuple(named[k] for k in self.output_names)


def _pairs_graph(keep=None):
    def feeds(batch, seed):
        return {"x": np.random.default_rng(seed).standard_normal((batch, 4)).astype(np.float32)}

    return FamilyGraph(_Pairs(), (TensorSpec("x", "float32", ("batch", 4)),), feeds, keep=keep)


def test_outputs_coupled_to_the_batch_are_left_out():
    fg = _pairs_graph()
    outs = choose_outputs(fg, "main", "test")
    assert [t.name for t in outs] == ["embeds"] and outs[0].shape == ("batch", 3)
    assert fg.module.output_names == ("embeds",)
    assert "axes 0 and 1" in batch_coupling((2, 2), (3, 3), (2, 3))
    assert "batch on axis 0" in batch_coupling((3,), (3,), (2, 3))
    assert batch_coupling((2, 7, 5), (3, 7, 5), (2, 3)) is None


def test_a_family_that_keeps_a_coupled_output_is_one_line():
    with pytest.raises(EdgemmError, match=r"'similarity'.*more than one axis that follows the batch"):
        choose_outputs(_pairs_graph(keep=("embeds", "similarity")), "main", "test")


PLUGIN = textwrap.dedent('''
    import numpy as np
    import torch
    from edgemm.families.base import Family, FamilyGraph
    from edgemm.iospec import TensorSpec


    class Doubler(torch.nn.Module):
        output_names = ("doubled",)

        def __init__(self, scale):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(float(scale)))

        def outputs(self, signal):
            return {"doubled": signal * self.scale, "ignored": signal.sum(0)}

        def forward(self, signal):
            return tuple(self.outputs(signal)[k] for k in self.output_names)


    class ScaleFamily(Family):
        name = "scale-json"
        description = "a folder holding scale.json"

        def recognises_folder(self, folder):
            return "scale.json" in folder.files

        def load(self, folder):
            import json
            return Doubler(json.loads((folder.path / "scale.json").read_text())["scale"])

        def graphs(self, model, folder):
            def feeds(batch, seed):
                return {"signal": np.random.default_rng(seed).uniform(-1, 1, (batch, 8)).astype(np.float32)}
            return {"main": FamilyGraph(model, (TensorSpec("signal", "float32", ("batch", 8)),), feeds)}


    class RaisingFamily(ScaleFamily):
        name = "raising"

        def recognises_folder(self, folder):
            return "raise.json" in folder.files

        def load(self, folder):
            return Doubler(1.0)

        def graphs(self, model, folder):
            raise ValueError("this family cannot split the model")
''')
BROKEN = "raise ImportError('this family plugin is broken on purpose')\n"


def test_a_family_from_an_entry_point(tmp_path):
    site = tmp_path / "site"
    install(site, {"scale_family": ({"edgemm.families": "scale-json = scale_family:ScaleFamily\nraising = scale_family:RaisingFamily"},
                                    PLUGIN),
                   "broken_family": ({"edgemm.families": "broken = broken_family:nothing"}, BROKEN)})
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "scale.json").write_text('{"scale": 2.5}')
    out = tmp_path / "b"
    run = subprocess.run([sys.executable, "-m", "edgemm", "-q", "export", str(folder), "-o", str(out), "--target", "onnxruntime",
                          "--threads", "2"], env=env_with(site), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    b = Bundle.open(out)
    assert b.spec.output_names == ["doubled"]  # "ignored" has no batch axis: left out
    assert b.manifest["graphs"]["main"]["family"]["name"] == "scale-json"
    x = np.ones((2, 8), np.float32)
    with edgemm.load(out, backend="onnxruntime") as rt:
        np.testing.assert_allclose(rt.run({"signal": x})["doubled"], 2.5 * x, rtol=1e-6)
    (folder / "raise.json").write_text('{"scale": 1}')
    (folder / "scale.json").unlink()
    run = subprocess.run([sys.executable, "-m", "edgemm", "export", str(folder), "-o", str(tmp_path / "b2")], env=env_with(site),
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 2 and not (tmp_path / "b2").exists()
    assert run.stderr.strip().splitlines()[-1] == ("edgemm: error: family 'raising' (scale_family.RaisingFamily, a plugin) raised "
                                                   "ValueError in graphs: this family cannot split the model; fix or uninstall "
                                                   "the package that provides it")
    code = "from edgemm.families.registry import broken_families; print(broken_families())"
    listed = subprocess.run([sys.executable, "-c", code], env=env_with(site), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert "broken" in listed.stdout and "on purpose" in listed.stdout, listed.stdout + listed.stderr
