"""Configs typed by people: wrong types, NaN/inf, out-of-range values, bad enums and strings for bools or numbers
end in one ConfigError line naming the key, the value and what is allowed (recipe, CLI and API alike)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemm.cli import main
from edgemm.cli.commands.flags import stage_classes
from edgemm.errors import ConfigError, RecipeError
from edgemm.options import build_options, option_fields, section_of
from edgemm.recipe import load_recipe

from models.paths import RECIPE, ROOT

BASE = RECIPE.read_text().split("\n[export]")[0].replace('"../', f'"{ROOT}/')


def _classes():
    from edgemm.backends.registry import all_backends

    backends = [b.options for b in all_backends().values() if b.options is not None and type(b).__module__.startswith("edgemm.")]
    return [*stage_classes(), *backends]


def _members(annotation) -> tuple:
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(a for a in get_args(annotation) if a is not type(None))
    return (annotation,)


def _bad_values(f) -> list:
    """Values a person might type that field ``f`` must refuse."""
    members = _members(f.annotation)
    out: list = []
    takes_str = any(a is str or get_origin(a) is Literal for a in members)
    if any(a in (int, float) for a in members):
        out += [math.nan, math.inf, -math.inf]
        if not takes_str:
            out += ["1", "x", "nan"]
        out += [True] if bool not in members else []
        lo, hi = f.bounds.get("ge", f.bounds.get("gt")), f.bounds.get("le", f.bounds.get("lt"))
        if lo is not None:
            out.append(lo - 1 if "ge" in f.bounds else lo)
        if hi is not None:
            out.append(hi + 1 if "le" in f.bounds else hi)
        if int in members and float not in members:
            out.append(2.5)
    if members == (bool,):
        out += ["no", "yes", "true", 0, 1]
    for a in members:
        if get_origin(a) is Literal:
            out += ["no-such-choice", 3]
    if members == (str,):
        out += [3, True]
    if all(get_origin(a) is tuple for a in members):
        out += [[1, 2], 3]
    return out


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise AssertionError(value)


CASES = [(cls, f, v) for cls in _classes() for f in option_fields(cls) for v in _bad_values(f)]


def _load(table_text: str):
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "r.toml"
        p.write_text(f"{BASE}\n{table_text}\n")
        return load_recipe(p)


def _assert_one_line(err: BaseException, *needles: str) -> str:
    msg = str(err)
    assert "\n" not in msg and "is not allowed" in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(CASES))
def test_recipe_tables_with_bad_values_are_one_config_error(case):
    cls, f, value = case
    section = section_of(cls)
    with pytest.raises(ConfigError) as err:
        _load(f"[{section}]\n{f.name} = {_toml(value)}")
    _assert_one_line(err.value, f"[{section}] {f.name} = ")


@settings(max_examples=100, deadline=None)
@given(case=st.sampled_from(CASES), good=st.booleans())
def test_api_options_with_bad_values_are_one_config_error(case, good):
    """The same values through the API (options= dicts and direct construction) fail the same way."""
    cls, f, value = case
    with pytest.raises(ConfigError) as err:
        if good:
            build_options(cls, {f.name: value}, f"edgemm.export(options[{section_of(cls)!r}])")
        else:
            cls(**{f.name: value})
    _assert_one_line(err.value, f"{f.name} = ")


@settings(max_examples=60, deadline=None)
@given(key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12), cls=st.sampled_from(_classes()))
def test_unknown_keys_are_refused_with_the_known_ones(key, cls):
    known = [f.name for f in option_fields(cls)]
    if key in known:
        return
    with pytest.raises(ConfigError) as err:
        _load(f"[{section_of(cls)}]\n{key} = 1")
    msg = str(err.value)
    assert "\n" not in msg and f"unknown key {key!r}" in msg and "known keys: " in msg


@settings(max_examples=60, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not (0 <= x < 0.5)),
                       st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=5), st.booleans()))
def test_prune_shift_anything_outside_its_range_is_refused(value):
    with pytest.raises(ConfigError) as err:
        _load(f"[prune]\nratio = 0.5\nshift = {_toml(value)}")
    _assert_one_line(err.value, "[prune] shift = ")


@pytest.mark.parametrize("table, says", [
    ('[prune]\nratio = 0.5\nseed = "x"', "[prune] seed = 'x' is not allowed: expected an integer"),
    ("[prune]\nratio = 0.5\niterative_steps = 2.5", "[prune] iterative_steps = 2.5 is not allowed: expected an integer"),
    ("[prune]\nratio = 0.5\nlr = nan", "[prune] lr = nan is not allowed: expected a finite number"),
    ('[prune]\nratio = 0.5\nmixup = "no"', "[prune] mixup = 'no' is not allowed: expected true or false"),
    ('[quantize]\nmax_drop = "lots"', "[quantize] max_drop = 'lots' is not allowed"),
    ('[compile.openvino]\nperformance_hint = "FAST"', "[compile.openvino] performance_hint = 'FAST' is not allowed: expected one of"),
    ('[stages]\nenable = "ort-format"', "[stages] enable = 'ort-format' is not allowed: expected a list of stage names"),
])
def test_cli_recipe_mistakes_exit_2_in_one_line(tmp_path, capsys, table, says):
    p = tmp_path / "r.toml"
    p.write_text(f"{BASE}\n{table}\n")
    assert main(["export", str(p), "-o", str(tmp_path / "b")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("edgemm: error: ") and says in err[0], err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.toml"]


@pytest.mark.parametrize("flags, says", [
    (["--prune", "0.5", "--finetune-minutes", "nan"], "--finetune-minutes nan is not allowed: expected a finite number"),
    (["--prune", "0.5", "--finetune-epochs", "-1"], "--finetune-epochs -1 is not allowed: expected an integer >= 0"),
    (["--prune", "0.5", "--prune-iterative-steps", "2.5"], "--prune-iterative-steps 2.5 is not allowed: expected an integer"),
    (["--prune", "0.5", "--prune-lr", "inf"], "--prune-lr inf is not allowed: expected a finite number"),
    (["--max-drop", "nan"], "--max-drop nan is not allowed: expected a finite number"),
    (["--calib-method", "minmx"], "(did you mean 'minmax'?)"),
    (["--openvino-num-streams", "0"], "--openvino-num-streams 0 is not allowed: expected an integer >= 1"),
    (["--option", "prune.seed=x"], "--option prune.seed x is not allowed: expected an integer"),
    (["--option", "quantise.max_drop=0.1"], "unknown section 'quantise' (did you mean 'quantize'?)"),
    (["--option", "compile.openvnio.num_streams=2"], "did you mean 'openvino'"),
    (["--stage", "ort-fromat"], "unknown stage 'ort-fromat'"),
])
def test_cli_flag_mistakes_exit_2_in_one_line(tmp_path, capsys, flags, says):
    assert main(["export", str(RECIPE), *flags, "-o", str(tmp_path / "b")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("edgemm: error: ") and says in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_cli_mistake_in_a_real_process(tmp_path):
    res = subprocess.run([sys.executable, "-m", "edgemm", "export", str(RECIPE), "--prune", "0.5", "--finetune-minutes", "nan",
                          "-o", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == ["edgemm: error: --finetune-minutes nan is not allowed: expected a finite number >= 0 or none"]
    assert not (tmp_path / "b").exists()


def test_compile_refuses_another_backends_options(tmp_path, capsys):
    assert main(["compile", str(tmp_path), "--target", "onnxruntime", "--openvino-num-streams", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgemm: error: options of compile.openvino were given") and "\n" not in err


def test_recipe_errors_are_recipe_errors():
    """ConfigError is a RecipeError: code that caught recipe mistakes keeps catching them."""
    with pytest.raises(RecipeError):
        _load("[verify]\nbatch = 0")
