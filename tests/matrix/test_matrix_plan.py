"""Matrix plans are checked like recipes: every bad table, key or value is one ConfigError line naming the plan,
the table and what is allowed (with a close-match hint), before any cell runs."""
from __future__ import annotations

import subprocess
import sys

import pytest

from edgemm.errors import ConfigError
from edgemm.matrix import load_plan

from models.paths import ROOT

GOOD = """[matrix]
targets = ["onnxruntime", "openvino"]
precisions = ["fp32", "int8"]

[[models]]
model = "tiny.toml"
"""


@pytest.fixture
def plan_dir(tmp_path):
    (tmp_path / "tiny.toml").write_text("# a recipe (not read by the plan check)\n")
    return tmp_path


def _plan(folder, text: str):
    p = folder / "plan.toml"
    p.write_text(text)
    return load_plan(p)


def _refused(folder, text: str, *needles: str) -> str:
    with pytest.raises(ConfigError) as err:
        _plan(folder, text)
    msg = str(err.value)
    assert "\n" not in msg and "plan.toml" in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_the_sample_plan_is_avnet_on_two_targets_in_two_precisions():
    plan = load_plan(ROOT / "export" / "matrix.toml")
    assert [c.id for c in plan.cells] == ["avnet/onnxruntime/fp32/any", "avnet/onnxruntime/int8/any",
                                          "avnet/openvino/fp32/any", "avnet/openvino/int8/any"]
    assert plan.output() == (ROOT / "build" / "matrix").resolve()


def test_cells_are_models_x_kinds_x_targets_x_precisions_with_per_model_overrides(plan_dir):
    plan = _plan(plan_dir, GOOD.replace('[matrix]', '[matrix]\ndevice_kinds = ["any", "jetson-orin"]') +
                 '\n[[models]]\nname = "small"\nmodel = "tiny.toml"\nprecisions = ["fp32"]\ndevice_kinds = ["edge-x86"]\n')
    assert len(plan.cells) == 2 * 2 * 2 + 2
    assert {c.device_kind for c in plan.cells if c.model == "small"} == {"edge-x86"}
    assert len({c.id for c in plan.cells}) == len(plan.cells)


def test_keys_follow_what_a_cell_depends_on(plan_dir):
    a = _plan(plan_dir, GOOD).cells[0]
    b = _plan(plan_dir, GOOD + "[bench]\nrounds = 3\n").cells[0]
    c = _plan(plan_dir, GOOD.replace('model = "tiny.toml"', 'model = "tiny.toml"\noptions = {export = {opset = 19}}')).cells[0]
    assert a.build_key == b.build_key and a.measure_key != b.measure_key  # timing changed: measured again, not rebuilt
    assert a.build_key != c.build_key and a.measure_key != c.measure_key  # an export option changed: rebuilt
    (plan_dir / "tiny.toml").write_text("# edited\n")
    assert _plan(plan_dir, GOOD).cells[0].build_key != a.build_key  # the recipe changed: rebuilt


@pytest.mark.parametrize("text, needles", [
    (GOOD.replace("[matrix]", "[matirx]"), ["unknown table [matirx]", "did you mean 'matrix'"]),
    (GOOD.replace("targets =", "target ="), ["[matrix]", "unknown key 'target'", "did you mean 'targets'"]),
    (GOOD.replace('"int8"]', '"int4"]'), ["[matrix]", "precisions", "int4"]),
    (GOOD.replace('"openvino"]', '"openvnio"]'), ["'openvnio' is not a target", "did you mean 'openvino'"]),
    (GOOD.replace('"tiny.toml"', '"missing.toml"'), ["[[models]] #1", "missing.toml", "not found", "relative to the plan"]),
    (GOOD + '\n[[models]]\nmodel = "tiny.toml"\n', ["[[models]] #2", "name = 'tiny' is given twice"]),
    (GOOD.replace("[matrix]", '[matrix]\ndevice_kinds = ["CPU"]'), ["'CPU' is one of Ray's own resources"]),
    (GOOD.replace("[matrix]", '[matrix]\ndevice_kinds = ["jetson orin"]'), ["'jetson orin' is not allowed"]),
    (GOOD + "options = {quantise = {max_drop = 0.02}}\n", ["unknown options section 'quantise'", "did you mean 'quantize'"]),
    (GOOD + "options = {quantize = {max_dorp = 0.02}}\n", ["options.quantize", "unknown key 'max_dorp'", "did you mean 'max_drop'"]),
    (GOOD + "\n[bench]\nrounds = 0\n", ["[bench]", "rounds = 0 is not allowed"]),
    (GOOD + "\n[bench]\nseconds = \"1\"\n", ["[bench]", "seconds"]),
    (GOOD.replace('model = "tiny.toml"', 'modle = "tiny.toml"'), ["[[models]] #1", "unknown key 'modle'", "did you mean 'model'"]),
    ("[matrix]\n", ["at least one [[models]] table"]),
    ("[matrix\n", ["not a valid TOML plan"]),
])
def test_a_bad_plan_is_one_line_naming_the_key_and_the_fix(plan_dir, text, needles):
    _refused(plan_dir, text, *needles)


def test_the_cli_refuses_a_bad_plan_in_one_line_with_exit_2(plan_dir):
    (plan_dir / "plan.toml").write_text(GOOD.replace("targets =", "target ="))
    res = subprocess.run([sys.executable, "-m", "edgemm", "matrix", str(plan_dir / "plan.toml")], capture_output=True,
                         text=True, timeout=120, cwd=plan_dir)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("edgemm: error: "), res.stderr
    assert "did you mean 'targets'" in lines[0]
    assert not (plan_dir / "build").exists()  # nothing made before the plan was good


def test_without_ray_the_ray_flag_is_one_line_with_the_install_hint(plan_dir):
    (plan_dir / "plan.toml").write_text(GOOD)
    code = ("import sys; sys.modules['ray'] = None; from edgemm.cli import main; "  # as if Ray were not installed
            f"sys.exit(main(['matrix', {str(plan_dir / 'plan.toml')!r}, '--ray', 'auto']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=plan_dir)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "pip install 'edgemm[ray]'" in lines[0] and "leave out --ray" in lines[0]
    assert not (plan_dir / "build").exists()
