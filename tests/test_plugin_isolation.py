"""Plugins are isolated: a broken plugin package of each kind, installed beside edgemm as a real distribution
(``<site>/<pkg>/__init__.py`` + ``<site>/<pkg>-0.1.dist-info/{METADATA,entry_points.txt}`` on PYTHONPATH), is
listed as broken with its reason while ``--version``, ``--help``, ``edgemm backends`` and an export keep working;
``--help``/``--version`` never run a plugin's code; a plugin runner's wrong outputs are a verify breach naming it.
Every check runs ``python -m edgemm`` in a real subprocess."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from models.paths import RECIPE, ROOT

# One package per way a plugin can be broken. Keys: distribution/package name -> (entry points, module source).
ORT_RUNNER = '''
from edgemm.backends import Availability, Backend, Runner, RunnerOptions


class _OrtRunner(Runner):
    def __init__(self, path, spec, options):
        super().__init__(spec)
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def _infer(self, feeds):
        return self.session.run(self.spec.output_names, feeds)


class _OrtBackend(Backend):
    formats = ("onnx",)
    precisions = ("fp32",)
    description = "test plugin: onnxruntime with a twist"

    def availability(self):
        return Availability(True, version="0.1", devices=("cpu",))

    def create_runner(self, path, spec, options=RunnerOptions()):
        return _OrtRunner(path, spec, options)
'''

BROKEN = {
    "edgemm_raises": ({"edgemm.backends": "raises = edgemm_raises:Backend"},
                      'raise RuntimeError("this plugin is broken on purpose")\n'),
    "edgemm_exits": ({"edgemm.backends": "exits = edgemm_exits:Backend"},
                     'import sys\nprint("a plugin chatting on stdout")\nsys.exit(3)\n'),
    "edgemm_missing_dep": ({"edgemm.backends": "missing-dep = edgemm_missing_dep:Backend"},
                           "import a_module_nobody_installed  # noqa\n"),
    "edgemm_not_a_backend": ({"edgemm.backends": "not-a-backend = edgemm_not_a_backend:THING",
                              "edgemm.quantizers": "not-a-quantizer = edgemm_not_a_backend:THING"},
                             'THING = {"name": "i am a dict"}\n'),
    "edgemm_nonsense": ({"edgemm.backends": "\n".join([
        "taken-name = edgemm_nonsense:TakesOnnxruntime",
        "bad-formats = edgemm_nonsense:StringFormats",
        "bad-precision = edgemm_nonsense:Fp64",
        "claims-reference = edgemm_nonsense:Reference",
        "raises-in-init = edgemm_nonsense:RaisesInInit",
        "bad-availability = edgemm_nonsense:RaisesInAvailability"])},
        ORT_RUNNER + textwrap.dedent('''
        class TakesOnnxruntime(_OrtBackend):
            name = "onnxruntime"

        class StringFormats(_OrtBackend):
            name = "string-formats"
            formats = "onnx"

        class Fp64(_OrtBackend):
            name = "fp64"
            precisions = ("fp64",)

        class Reference(_OrtBackend):
            name = "my-reference"
            reference = True

        class RaisesInInit(_OrtBackend):
            name = "raises-in-init"

            def __init__(self):
                raise ValueError("cannot construct")

        class RaisesInAvailability(_OrtBackend):
            name = "bad-availability"

            def availability(self):
                raise OSError("driver exploded")
        ''')),
    "edgemm_bad_quantizer": ({"edgemm.quantizers": "bad-q = edgemm_bad_quantizer:Q\ncollides = edgemm_bad_quantizer:Ort"},
                             textwrap.dedent('''
        import dataclasses
        from edgemm.stages.quantize.registry import BUILTIN, Quantizer
        Q = Quantizer("bad-q", "declares nonsense", "openvino-ir", "openvino", True)
        Ort = dataclasses.replace(BUILTIN[0])  # the built-in 'ort' again
        ''')),
}

# A distribution whose entry_points.txt cannot be parsed. Not in BROKEN: importlib.metadata.entry_points() raises
# for every group then, and libraries edgemm imports (pydantic reads its own plugin group) fail on it too.
MALFORMED = {"edgemm_malformed": ({"edgemm.backends": "this line has no equals sign"}, "X = 1\n")}

WRONG_OUTPUTS = {
    "edgemm_wrong_outputs": ({"edgemm.backends": "short-out = edgemm_wrong_outputs:Short\nwide-out = edgemm_wrong_outputs:Wide"},
                             ORT_RUNNER + textwrap.dedent('''
        class _ShortRunner(_OrtRunner):
            def _infer(self, feeds):
                return super()._infer(feeds)[:1]  # forgets the second head

        class _WideRunner(_OrtRunner):
            def _infer(self, feeds):
                import numpy as np

                return [np.concatenate([o, o], axis=1) for o in super()._infer(feeds)]  # twice the width

        class Short(_OrtBackend):
            name = "short-out"

            def create_runner(self, path, spec, options=RunnerOptions()):  # noqa: B008
                return _ShortRunner(path, spec, options)

        class Wide(_OrtBackend):
            name = "wide-out"

            def create_runner(self, path, spec, options=RunnerOptions()):
                return _WideRunner(path, spec, options)
        ''')),
}

# Writes a marker file when imported: proves whether a command ran a plugin's code.
MARKER = {"edgemm_marker": ({"edgemm.backends": "marker = edgemm_marker:Backend",
                             "edgemm.quantizers": "marker-q = edgemm_marker:Q"},
                            'import os, pathlib\npathlib.Path(os.environ["EDGEMM_TEST_MARKER"]).write_text("imported")\n')}


def install(site: Path, packages: dict) -> None:
    """Each package as a real installed distribution: its module folder and its .dist-info beside it."""
    for pkg, (groups, source) in packages.items():
        (site / pkg).mkdir(parents=True)
        (site / pkg / "__init__.py").write_text(source)
        info = site / f"{pkg}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {pkg}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("".join(f"[{g}]\n{lines}\n\n" for g, lines in groups.items()))


def env_with(site: Path, **extra) -> dict:
    return {**os.environ, **extra,
            "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}


def edgemm(env, *args, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgemm", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT)


@pytest.fixture(scope="module")
def broken_env(tmp_path_factory):
    site = tmp_path_factory.mktemp("broken-site")
    install(site, {**BROKEN, **WRONG_OUTPUTS})
    return env_with(site)


def test_version_and_help_work_beside_broken_plugins(broken_env):
    r = edgemm(broken_env, "--version")
    assert r.returncode == 0 and r.stdout.startswith("edgemm ") and r.stderr == "", r.stderr[-2000:]
    for args in (["--help"], ["export", "--help"], ["compile", "--help"], ["backends", "--help"]):
        r = edgemm(broken_env, *args)
        assert r.returncode == 0 and "usage: edgemm" in r.stdout and r.stderr == "", (args, r.stderr[-2000:])


def test_backends_lists_each_broken_plugin_with_its_reason(broken_env):
    r = edgemm(broken_env, "backends", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "chatting" not in r.stdout  # a plugin's print at import does not corrupt the JSON
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    for builtin in ("torch", "onnxruntime", "openvino"):
        assert rows[builtin]["available"], rows[builtin]
    assert "twist" not in rows["onnxruntime"]["description"]  # the built-in name was not taken over
    expected = {
        "raises": "importing it raised RuntimeError: this plugin is broken on purpose",
        "exits": "importing it called sys.exit(3)",
        "missing-dep": "importing it fails (ModuleNotFoundError: No module named 'a_module_nobody_installed')",
        "not-a-backend": "it is a dict, not an edgemm Backend",
        "taken-name": "its name 'onnxruntime' is already a built-in backend's name",
        "bad-formats": "its formats must be a tuple of strings, got 'onnx'",
        "bad-precision": "its precisions ('fp64',) has 'fp64', which is none of fp32, fp16, int8",
        "claims-reference": "only edgemm's own torch backend is the accuracy reference",
        "raises-in-init": "creating it raised ValueError: cannot construct",
    }
    for name, reason in expected.items():
        assert name in rows, (name, sorted(rows))
        assert not rows[name]["available"], rows[name]
        assert reason in rows[name]["reason"], (name, rows[name]["reason"])
        assert "uninstall" in rows[name]["install"]
    assert not rows["bad-availability"]["available"]
    assert "availability() raised OSError: driver exploded" in rows["bad-availability"]["reason"]
    assert rows["short-out"]["available"] and rows["wide-out"]["available"]  # loads fine; wrong only when run

    r = edgemm(broken_env, "backends")
    assert r.returncode == 0 and r.stderr == "", r.stderr[-2000:]
    line = next(l for l in r.stdout.splitlines() if l.startswith("raises "))
    assert "unavailable" in line and "RuntimeError: this plugin is broken on purpose" in line


def test_broken_quantizer_plugins_are_left_out_with_their_reason(broken_env):
    code = ("from edgemm.stages.quantize.registry import quantizer_names, broken_quantizers, get_quantizer\n"
            "print(','.join(quantizer_names()))\n"
            "for n, b in sorted(broken_quantizers().items()): print(n, '|', b.reason)\n"
            "try:\n    get_quantizer('bad-q')\nexcept Exception as e:\n    print('get:', type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-c", code], env=broken_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0] == "ort,trt,nncf,inc,litert"
    reasons = dict(l.split(" | ", 1) for l in lines[1:-1])
    assert reasons["not-a-quantizer"].startswith("it is a dict, not an edgemm Quantizer")
    assert "must work on ONNX Q/DQ" in reasons["bad-q"]
    assert reasons["collides"] == "its name 'ort' is already a built-in quantizer's name"
    assert lines[-1].startswith("get: EdgemmError the quantizer plugin bad-q (edgemm_bad_quantizer:Q from edgemm_bad_quantizer) "
                                "is broken: a plugin quantizer must work on ONNX Q/DQ")


def test_a_malformed_distribution_is_broken_and_the_others_load(tmp_path):
    """The loader reads entry points one distribution at a time: an unreadable entry_points.txt affects only its own."""
    site = tmp_path / "site"
    install(site, {**MALFORMED, **WRONG_OUTPUTS})
    code = ("from edgemm.plugins import load_entry_points\n"
            "loaded, broken = load_entry_points('edgemm.backends', lambda obj: None)\n"
            "print(sorted(loaded))\n"
            "for n, b in broken.items(): print(n, '|', b.reason)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env_with(site), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0] == "['short-out', 'wide-out']"
    assert lines[1].startswith("edgemm_malformed (entry_points.txt) | its entry_points.txt cannot be read (TypeError"), lines


def test_help_and_version_never_import_a_plugin(tmp_path):
    site, marker = tmp_path / "site", tmp_path / "imported"
    install(site, MARKER)
    env = env_with(site, EDGEMM_TEST_MARKER=str(marker))
    for args in (["--version"], ["--help"], ["export", "--help"], ["compile", "--help"], ["verify", "--help"],
                 ["bench", "--help"], ["run", "--help"], ["backends", "--help"], ["info", "--help"]):
        r = edgemm(env, *args)
        assert r.returncode == 0, (args, r.stderr[-2000:])
        assert not marker.exists(), f"edgemm {' '.join(args)} imported the plugin"
    r = edgemm(env, "backends")  # the marker plugin is real: listing backends does import it
    assert r.returncode == 0 and marker.exists(), r.stderr[-2000:]


def test_export_help_names_the_built_in_quantizers():
    """The --quantizer help is static (so --help loads no plugin); it must keep naming every built-in quantizer."""
    from edgemm.stages.quantize.registry import BUILTIN

    r = subprocess.run([sys.executable, "-m", "edgemm", "export", "--help"], capture_output=True, text=True, timeout=120,
                       cwd=ROOT, env=env_with(ROOT))
    text = " ".join(r.stdout.split())
    for q in BUILTIN:
        assert f"{q.name} (" in text, q.name


@pytest.fixture(scope="module")
def tiny_pt2(tmp_path_factory) -> Path:
    import torch

    from models.tiny import TinyAV, tiny_feeds

    feeds = tiny_feeds(2)
    batch = torch.export.Dim("batch")
    ep = torch.export.export(TinyAV(0), (torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["audio"])),
                             dynamic_shapes=({0: batch}, {0: batch}))
    path = tmp_path_factory.mktemp("tiny-pt2") / "tiny.pt2"
    torch.export.save(ep, path)
    return path


@pytest.mark.parametrize("target, says", [
    ("short-out", r"returned 1 of the 2 outputs \(output_0, output_1\): no 'output_1'"),
    ("wide-out", r"returned output 'output_0' with shape \[(\d+), 8\], expected \[\1, 4\]"),
])
def test_wrong_outputs_of_a_plugin_runner_are_a_breach(broken_env, tiny_pt2, tmp_path, target, says):
    r = edgemm(broken_env, "-q", "export", tiny_pt2, "--target", target, "-o", tmp_path / "b")
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith(f"edgemm: error: parity breach: backend '{target}' (plugin edgemm_wrong_outputs:"), lines[0]
    assert re.search(says, lines[0]) and lines[0].endswith("; fix or uninstall that plugin"), lines[0]
    assert not (tmp_path / "b").exists()


def test_avnet_export_works_beside_every_broken_plugin(broken_env, tmp_path):
    """The issue's check: `edgemm export export/avnet.toml -o B` with a broken plugin of each kind installed (~30 s)."""
    out = tmp_path / "B"
    r = edgemm(broken_env, "-q", "export", RECIPE, "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr == "", r.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert {a["backend"] for a in manifest["artifacts"]} >= {"onnxruntime", "openvino"}
