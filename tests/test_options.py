"""The options seam: every option of every built-in stage and backend is reachable the same way everywhere.

For each field of each options class: the CLI flag of `edgemm export` / `edgemm compile` (the real parser),
the recipe key (a real recipe file) and the Python API (the PipelineConfig `edgemm.export` would run) give
the same validated value.
"""
from __future__ import annotations

import json
import math
import types
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest

from edgemm.cli import build_parser
from edgemm.cli.commands.flags import builtin_backend_options, section_values, stage_classes
from edgemm.configure import configure
from edgemm.errors import ConfigError
from edgemm.options import Options, build_options, option, option_fields, options, section_of
from edgemm.pipeline import resolve_model
from edgemm.recipe import load_recipe

from models.paths import RECIPE, ROOT

BASE = RECIPE.read_text().split("\n[export]")[0].replace('"../', f'"{ROOT}/')  # the avnet recipe without its option tables


def _builtin_backend_classes() -> dict[str, type[Options]]:
    from edgemm.backends.registry import all_backends

    return {name: b.options for name, b in all_backends().items()
            if b.options is not None and type(b).__module__.startswith("edgemm.")}


def _classes() -> list[type[Options]]:
    return [*stage_classes(), *_builtin_backend_classes().values()]


# Values for fields whose validators need a value that means something for avnet (a target, a branch, an axis ...).
SAMPLES = {
    ("export", "targets"): ("openvino",),
    ("quantize", "quantizer"): {"openvino": "nncf"},
    ("quantize", "max_drop"): 0.02,
    ("prune", "ratio"): {"image": 0.5},
    ("prune", "keep"): ("fuse.0", "image.body.0.0"),
    ("prune", "sparsity"): "2:4",
    ("compile.tensorrt", "fp32_ops"): ("Exp", "Softmax"),
    ("compile.tensorrt", "fp32_nodes"): ("node_1",),
}


def _sample(f) -> object:
    """A valid value of field ``f`` that is not its default."""
    if (f.section, f.name) in SAMPLES:
        return SAMPLES[(f.section, f.name)]
    members = [a for a in (get_args(f.annotation) if get_origin(f.annotation) in (types.UnionType,) or
                           str(get_origin(f.annotation)) == "typing.Union" else (f.annotation,)) if a is not type(None)]
    a = members[0]
    if get_origin(a) is Literal:
        return next(c for c in get_args(a) if c != f.default)
    if a is bool:
        return not f.default
    if a in (int, float):
        lo = f.bounds.get("ge", f.bounds.get("gt", 0))
        hi = f.bounds.get("le", f.bounds.get("lt", math.inf))
        d = f.default if isinstance(f.default, (int, float)) else None
        cands = ([d + 1, d * 2, d / 2] if d is not None else []) + [lo + 1, lo + 0.25, lo] + \
            ([(lo + hi) / 2] if hi != math.inf else []) + [2, 3, 1, 0.25, 0.5]
        for c in cands if a is float else [c for c in cands if float(c).is_integer()]:
            c = float(c) if a is float else int(c)
            ok_lo = c >= lo if "ge" in f.bounds or "gt" not in f.bounds else c > lo
            ok_hi = c <= hi if "le" in f.bounds or "lt" not in f.bounds else c < hi
            if ok_lo and ok_hi and c != f.default:
                return float(c) if a is float else c
    if a is str:
        return "x"
    if get_origin(a) is tuple:
        return ("a", "b")
    raise AssertionError(f"add a sample value for [{f.section}] {f.name} ({f.annotation}) to SAMPLES")


def _cli_text(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if value is None:
        return "none"
    return str(value)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise AssertionError(value)


def _cases():
    return [pytest.param(cls, f, id=f"{f.section}.{f.name}") for cls in _classes() for f in option_fields(cls)]


@pytest.fixture(scope="module")
def resolved():
    return resolve_model(str(RECIPE))


def _from_cli(cls, f, value, tmp_path):
    section = section_of(cls)
    assert f.flag is not None, f"[{section}] {f.name} has no CLI flag"
    if isinstance(value, bool):
        argv = [f.flag if value else "--no-" + f.flag[2:]]
    else:
        argv = [f.flag, _cli_text(value)]
    parser = build_parser()
    if section.startswith("compile."):
        args = parser.parse_args(["compile", str(tmp_path), "--target", section.split(".", 1)[1], *argv])
    else:
        args = parser.parse_args(["export", str(RECIPE), "-o", str(tmp_path / "b"), *argv])
    given = section_values(args, [cls])
    assert list(given.get(section, {})) == [f.name], (argv, given)
    return getattr(build_options(cls, given[section], "cli"), f.name)


def _from_recipe(cls, f, value, tmp_path):
    section = section_of(cls)
    p = tmp_path / "r.toml"
    p.write_text(f"{BASE}\n[{section}]\n{f.name} = {_toml(value)}\n")
    return getattr(load_recipe(p).sections()[section], f.name)


def _from_api(cls, f, value, tmp_path, resolved):
    section = section_of(cls)
    _, cfg = configure(str(RECIPE), output=tmp_path / "b", options={section: {f.name: value}}, resolved=resolved)
    return getattr(cfg.options[section], f.name)


@pytest.mark.parametrize("cls, f", _cases())
def test_every_option_is_the_same_from_cli_recipe_and_api(cls, f, tmp_path, resolved):
    value = _sample(f)
    assert f.help, f"[{f.section}] {f.name} has no help text"
    expected = getattr(build_options(cls, {f.name: value}, "sample"), f.name)
    assert expected != f.default, (f.name, expected)
    cli = _from_cli(cls, f, value, tmp_path)
    recipe = _from_recipe(cls, f, value, tmp_path)
    api = _from_api(cls, f, value, tmp_path, resolved)
    assert cli == recipe == api == expected, (cli, recipe, api, expected)


def test_the_option_flag_reaches_every_key(tmp_path):
    """``--option SECTION.KEY=VALUE`` gives the same value as the generated flag (here for one field of each class)."""
    parser = build_parser()
    for cls in _classes():
        f = next(x for x in option_fields(cls) if not isinstance(_sample(x), bool))
        section, value = section_of(cls), _sample(f)
        verb = ["compile", str(tmp_path), "--target", section.split(".", 1)[1]] if section.startswith("compile.") else \
            ["export", str(RECIPE), "-o", str(tmp_path / "b")]
        args = parser.parse_args([*verb, "--option", f"{section}.{f.name}={_cli_text(value)}"])
        got = getattr(build_options(cls, section_values(args, [cls])[section], "cli"), f.name)
        assert got == getattr(build_options(cls, {f.name: value}, "x"), f.name), (section, f.name)


def test_backend_classes_are_the_cli_ones():
    """The CLI finds the built-in backends' options classes without the registry (no plugin code for --help)."""
    assert builtin_backend_options() == _builtin_backend_classes()
    for name, cls in builtin_backend_options().items():
        assert section_of(cls) == f"compile.{name}"


def test_enums_match_the_code_that_reads_them():
    from edgemm.backends.onnxruntime.options import LEVELS, OnnxRuntimeOptions
    from edgemm.stages.options.prune import CRITERIA, HEAD_MODES, PruneOptions
    from edgemm.stages.quantize.qdq import METHODS
    from edgemm.stages.options.quantize import QuantizeOptions

    def choices(cls, name):
        return next(f.choices for f in option_fields(cls) if f.name == name)

    assert choices(QuantizeOptions, "method") == METHODS
    assert choices(PruneOptions, "criterion") == CRITERIA and choices(PruneOptions, "heads") == HEAD_MODES
    assert set(choices(OnnxRuntimeOptions, "optimization_level")) == set(LEVELS)


def test_contract_flags_keep_their_names():
    flags = {(f.section, f.name): f.flag for cls in stage_classes() for f in option_fields(cls)}
    assert flags[("export", "targets")] == "--target" and flags[("export", "opset")] == "--opset"
    assert flags[("quantize", "max_drop")] == "--max-drop" and flags[("quantize", "method")] == "--calib-method"
    assert flags[("quantize", "quantizer")] == "--quantizer" and flags[("quantize", "speed_guard")] == "--speed-guard"
    assert flags[("prune", "ratio")] == "--prune" and flags[("prune", "epochs")] == "--finetune-epochs"
    assert flags[("prune", "finetune_minutes")] == "--finetune-minutes" and flags[("prune", "max_drop")] == "--prune-max-drop"
    assert flags[("prune", "keep")] == "--prune-keep" and flags[("prune", "criterion")] == "--prune-criterion"
    args = build_parser().parse_args(["export", str(RECIPE), "-o", "b", "--no-speed-guard"])
    assert section_values(args, stage_classes()) == {"quantize": {"speed_guard": False}}


def test_api_keyword_arguments_land_on_the_same_fields(tmp_path, resolved):
    """The keyword arguments edgemm.export had before the seam set the same option fields as options=."""
    from edgemm.recipe import ExportConfig, VerifyConfig
    from edgemm.stages.options.prune import PruneOptions
    from edgemm.stages.options.quantize import QuantizeOptions

    def cfg(**kw):
        return configure(str(RECIPE), output=tmp_path / "b", resolved=resolved, **kw)[1]

    pairs = [
        (dict(max_drop=0.02), dict(options={"quantize": {"max_drop": 0.02}}), "quantize", "max_drop"),
        (dict(max_drop="2%"), dict(quantize=QuantizeOptions(max_drop="2%")), "quantize", "max_drop"),
        (dict(max_drop=None), dict(options={"quantize": {"max_drop": None}}), "quantize", "max_drop"),
        (dict(quantizer="nncf"), dict(options={"quantize": {"quantizer": "nncf"}}), "quantize", "quantizer"),
        (dict(quantizer={"openvino": "nncf"}), dict(options={"quantize": {"quantizer": "openvino=nncf"}}), "quantize", "quantizer"),
        (dict(calibration_method="entropy"), dict(options={"quantize": {"method": "entropy"}}), "quantize", "method"),
        (dict(speed_guard=False), dict(quantize={"speed_guard": False}), "quantize", "speed_guard"),
        (dict(opset=19), dict(export=ExportConfig(opset=19)), "export", "opset"),
        (dict(exporter="legacy"), dict(options={"export": {"exporter": "legacy"}}), "export", "exporter"),
        (dict(targets="openvino"), dict(options={"export": {"targets": ["openvino"]}}), "export", "targets"),
        (dict(prune=0.5), dict(options={"prune": {"ratio": "0.5"}}), "prune", "ratio"),
        (dict(prune=0.5, prune_options={"epochs": 3, "criterion": None}), dict(prune_options=PruneOptions(ratio=0.5, epochs=3)),
         "prune", "epochs"),
        (dict(verify_config=VerifyConfig(batch=4)), dict(options={"verify": {"batch": 4}}), "verify", "batch"),
    ]
    for old, new, section, key in pairs:
        a, b = cfg(**old), cfg(**new)
        assert getattr(a.options[section], key) == getattr(b.options[section], key), (old, new)
    c = cfg(prune="image=0.5", prune_options={"epochs": 3})
    assert c.prune.ratios == {"image": 0.5} and c.prune.epochs == 3 and c.options["prune"].epochs == 3
    d = cfg(int8=True, max_drop="2%", quantizer={"openvino": "nncf"})
    assert (d.ptq.max_drop, d.ptq.relative, d.ptq.quantizers) == (pytest.approx(0.02), True, {"openvino": "nncf"})
    assert cfg(verify_config=VerifyConfig(batch=4)).verify.batch == 4
    assert cfg(targets=["openvino"]).export.targets == ("openvino",)


def test_api_precedence_recipe_then_typed_then_options_then_keywords(tmp_path, resolved):
    _, cfg = configure(str(RECIPE), output=tmp_path / "b", resolved=resolved, quantize={"max_drop": 0.05, "method": "entropy"},
                       options={"quantize": {"max_drop": 0.04}}, max_drop=0.03)
    q = cfg.options["quantize"]
    assert (q.max_drop, q.method) == (0.03, "entropy")
    assert cfg.options["verify"].parity_samples == 32  # the recipe's [verify]


def test_recipe_export_still_works_from_the_api(tmp_path, resolved):
    """``edgemm.export("export/avnet.toml", output=..., int8=True)``: the recipe's tables, int8 on."""
    _, cfg = configure(str(RECIPE), output=tmp_path / "b", int8=True, resolved=resolved)
    assert cfg.int8 and cfg.ptq.max_drop == pytest.approx(0.01) and cfg.export.targets == ("onnxruntime", "openvino")
    assert {"export", "verify", "quantize", "qat"} <= set(cfg.options) and cfg.stages == ()


def test_api_errors_name_the_argument(tmp_path, resolved):
    with pytest.raises(ConfigError, match=r"edgemm.export\(max_drop=\): max_drop = nan is not allowed: expected a finite number"):
        configure(str(RECIPE), output=tmp_path / "b", resolved=resolved, max_drop=float("nan"))
    with pytest.raises(ConfigError, match=r"options\['prune'\]\): unknown key 'epoch' \(did you mean 'epochs'\?\)"):
        configure(str(RECIPE), output=tmp_path / "b", resolved=resolved, options={"prune": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"unknown options section 'quantise' \(did you mean 'quantize'\?\)"):
        configure(str(RECIPE), output=tmp_path / "b", resolved=resolved, options={"quantise": {}})
    with pytest.raises(ConfigError, match="got QATOptions options, expected QuantizeOptions"):
        from edgemm.stages.options.qat import QATOptions

        configure(str(RECIPE), output=tmp_path / "b", resolved=resolved, options={"quantize": QATOptions()})


# ------------------------------------------------------------------ the seam itself


@options("stages.test-seam")
class SeamOptions(Options):
    level: Literal["low", "high"] = option("low", help="a level")
    count: int | None = option(None, ge=1, help="a count")
    ratio: float = option(0.5, gt=0, lt=1, help="a ratio")
    names: tuple[str, ...] = option((), help="names")
    on: bool = option(True, help="a switch")


def test_seam_types_are_strict_and_frozen():
    assert build_options(SeamOptions, {"names": ["a"], "ratio": 0.25}, "t").names == ("a",)  # lists are tuples
    assert build_options(SeamOptions, {"ratio": 0.25}, "t").ratio == 0.25
    o = SeamOptions(count=2)
    with pytest.raises(Exception):
        o.count = 3  # type: ignore[misc]
    for values, says in [({"count": "2"}, "expected an integer >= 1 or none"), ({"count": True}, "expected an integer >= 1 or none"),
                         ({"on": "no"}, "expected true or false"), ({"on": 1}, "expected true or false"),
                         ({"ratio": float("inf")}, "expected a finite number"), ({"ratio": 1}, "expected a number in (0, 1)"),
                         ({"level": "hihg"}, "expected one of 'low', 'high' (did you mean 'high'?)"),
                         ({"names": [1]}, "expected a list of strings"), ({"count": 0}, "expected an integer >= 1 or none")]:
        with pytest.raises(ConfigError) as err:
            build_options(SeamOptions, values, "where [stages.test-seam]")
        key = next(iter(values))
        assert str(err.value).startswith(f"where [stages.test-seam] {key} = ") and says in str(err.value), str(err.value)
    with pytest.raises(ConfigError, match="SeamOptions: count = 0 is not allowed"):
        SeamOptions(count=0)  # direct construction fails in one line too
    with pytest.raises(ConfigError, match=r"unknown key 'cuont' \(did you mean 'count'\?\); known keys: count, level, names, on, ratio"):
        build_options(SeamOptions, {"cuont": 1}, "t")


def test_seam_metadata():
    fields = {f.name: f for f in option_fields(SeamOptions)}
    assert fields["level"].choices == ("low", "high") and fields["level"].flag == "--test-seam-level"
    assert dict(fields["ratio"].bounds) == {"gt": 0, "lt": 1} and fields["count"].default is None
    assert section_of(SeamOptions) == "stages.test-seam" and section_of(SeamOptions()) == "stages.test-seam"
