"""Recipes: export/avnet.toml loads into typed configs; mistakes are RecipeErrors with hints."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgemm.errors import RecipeError
from edgemm.recipe import ExportConfig, VerifyConfig, load_recipe

from models.paths import RECIPE, ROOT

BASE = RECIPE.read_text()


def _write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    """A recipe in tmp with paths rewritten to absolute ones (relative paths are relative to the file)."""
    text = text.replace('"../', f'"{ROOT}/')
    p = tmp_path / name
    p.write_text(text)
    return p


def test_loads_shipped_recipe():
    r = load_recipe(RECIPE)
    assert r.model.name == "avnet"
    assert r.model.factory == "edgemm.zoo.avnet:build"
    assert r.spec.input_names == ["image", "audio"]
    assert r.spec.output_names == ["digit", "speaker"]
    assert r.spec.input("image").preprocessing.size == (64, 64)
    assert r.spec.input("audio").preprocessing.sample_rate == 16000
    assert r.spec.output("speaker").labels[0] == "george"
    assert r.export.targets == ("onnxruntime", "openvino")
    assert r.export.opset == 18
    assert r.verify.parity_samples == 32
    assert r.verify.cosine_min == pytest.approx(0.9999)
    # relative paths resolve against the recipe file, not the cwd
    assert r.resolve(r.model.checkpoint) == (ROOT / "edgemm/zoo/checkpoints/avnet.pt").resolve()
    assert r.resolve(r.data.evaluation).is_file()
    assert r.resolve(r.data.calibration).is_file()


def test_shipped_recipe_spec_equals_zoo_spec():
    from edgemm.zoo.avnet import iospec

    assert load_recipe(RECIPE).spec == iospec()


def test_build_model_from_recipe(tmp_path):
    import torch

    model = load_recipe(RECIPE).build_model()
    assert isinstance(model, torch.nn.Module) and not model.training


def test_unknown_section_with_hint(tmp_path):
    p = _write(tmp_path, BASE.replace("[export]", "[exprot]"))
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    assert "[exprot]" in str(exc.value) and "did you mean 'export'" in str(exc.value)


def test_unknown_key_with_hint(tmp_path):
    p = _write(tmp_path, BASE.replace("parity_samples = 32", "parity_sample = 32"))
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    msg = str(exc.value)
    assert "'parity_sample'" in msg and "[verify]" in msg and "did you mean 'parity_samples'" in msg


def test_unknown_input_key_with_hint(tmp_path):
    p = _write(tmp_path, BASE.replace('modality = "audio"', 'modalty = "audio"'))
    with pytest.raises(RecipeError, match="did you mean 'modality'"):
        load_recipe(p)


def test_unknown_preprocessing_key_with_hint(tmp_path):
    p = _write(tmp_path, BASE.replace("n_mels = 64", "n_mel = 64"))
    with pytest.raises(RecipeError, match="did you mean 'n_mels'"):
        load_recipe(p)


def test_bad_target_with_hint(tmp_path):
    p = _write(tmp_path, BASE.replace('targets = ["onnxruntime", "openvino"]', 'targets = ["onnxruntime", "openvnio"]'))
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    assert "'openvnio'" in str(exc.value) and "did you mean 'openvino'" in str(exc.value)


def test_bad_opset_type_and_value(tmp_path):
    with pytest.raises(RecipeError, match="opset"):
        load_recipe(_write(tmp_path, BASE.replace("opset = 18", "opset = 13")))
    with pytest.raises(RecipeError):
        load_recipe(_write(tmp_path, BASE.replace("opset = 18", 'opset = "18"'), "r2.toml"))


def test_missing_model_section(tmp_path):
    text = BASE.split("[[inputs]]", 1)
    text = "[[inputs]]" + text[1]  # drop everything before the inputs: the [model] table
    with pytest.raises(RecipeError, match=r"missing \[model\]"):
        load_recipe(_write(tmp_path, text))


def test_missing_inputs(tmp_path):
    head = BASE.split("[[inputs]]", 1)[0]
    with pytest.raises(RecipeError, match="inputs"):
        load_recipe(_write(tmp_path, head))


def test_missing_checkpoint(tmp_path):
    p = _write(tmp_path, BASE.replace("checkpoints/avnet.pt", "checkpoints/nope.pt"))
    r = load_recipe(p)  # a path is data, checked when the model is built
    with pytest.raises(RecipeError) as exc:
        r.build_model()
    assert "nope.pt" in str(exc.value) and "not found" in str(exc.value)


def test_bad_factory(tmp_path):
    r = load_recipe(_write(tmp_path, BASE.replace("edgemm.zoo.avnet:build", "edgemm.zoo.avnet:biuld")))
    with pytest.raises(RecipeError, match="did you mean 'build'"):
        r.build_model()
    r = load_recipe(_write(tmp_path, BASE.replace("edgemm.zoo.avnet:build", "edgemm.zoo.nosuch:build"), "r2.toml"))
    with pytest.raises(RecipeError, match="cannot import"):
        r.build_model()


def test_not_found_and_invalid_toml(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname = 1\n")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad)


def test_config_dataclasses_validate():
    with pytest.raises(RecipeError, match="did you mean 'tensorrt'"):
        ExportConfig(targets=("tensorrtt",))
    with pytest.raises(RecipeError, match="exporter"):
        ExportConfig(exporter="script")
    assert VerifyConfig().cosine_min == pytest.approx(0.9999)


def test_targets_as_a_string_is_explained(tmp_path):
    p = _write(tmp_path, BASE.replace('targets = ["onnxruntime", "openvino"]', 'targets = "openvino"'))
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    assert "'o'" not in str(exc.value) and "list" in str(exc.value)


# ------------------------------------------------------------------ option tables (edgemm.options)


def test_option_tables_are_typed(tmp_path):
    base = BASE.split("\n[export]")[0]
    p = _write(tmp_path, base + '\n[quantize]\nmax_drop = "2%"\nquantizer = {openvino = "nncf"}\n'
                              '[prune]\nepochs = 3\n[qat]\nlr = 1e-4\n'
                              '[compile.openvino]\nperformance_hint = "THROUGHPUT"\nnum_streams = 2\n'
                              '[compile.onnxruntime]\noptimization_level = "basic"\n')
    r = load_recipe(p)
    assert r.quantize.max_drop == "2%" and r.quantize.budget == (pytest.approx(0.02), True)
    assert r.quantize.quantizer == {"openvino": "nncf"}
    assert r.prune.epochs == 3 and r.prune.ratio is None  # settings only: pruning runs when --prune gives the ratio
    assert r.qat.lr == pytest.approx(1e-4)
    assert (r.compile["openvino"].performance_hint, r.compile["openvino"].num_streams) == ("THROUGHPUT", 2)
    assert r.compile["onnxruntime"].optimization_level == "basic"
    assert set(r.sections()) == {"export", "verify", "quantize", "prune", "qat", "compile.openvino", "compile.onnxruntime"}


@pytest.mark.parametrize("table, says", [
    ("[compile.openvnio]\nnum_streams = 2", "did you mean 'openvino'"),
    ("[compile.openvino]\nnum_stream = 2", "[compile.openvino] unknown key 'num_stream' (did you mean 'num_streams'?)"),
    ("[compile.openvino]\nnum_streams = 0", "[compile.openvino] num_streams = 0 is not allowed: expected an integer >= 1 or none"),
    ("[prune]\nratio = \"imgae=0.5\"", "not a branch of the model (did you mean 'image'?)"),
    ("[prune]\nratio = 1.5", "outside (0, 1)"),
    ("[stages]\nenable = [\"ort-fromat\"]", "unknown stage 'ort-fromat'"),
    ("[stages.prune]\nx = 1", "stage 'prune' takes no options"),
    ("[precision]\nexclude_ops = \"Softmax\"", "[precision] exclude_ops = 'Softmax' is not allowed: expected a list of strings"),
    ("[export]\nopset = 18.0", "[export] opset = 18.0 is not allowed: expected an integer >= 18"),
])
def test_option_table_mistakes(tmp_path, table, says):
    p = _write(tmp_path, BASE.split("\n[export]")[0] + "\n" + table + "\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(p)
    assert says in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_stage_tables_go_through_the_stage_options(tmp_path, monkeypatch):
    """[stages] enable + [stages.<name>] validated by the stage's options class (a stage registered for the test)."""
    from typing import Literal

    import edgemm.stages.registry as registry
    from edgemm.options import Options, option, options
    from edgemm.stages.base import Stage

    @options("stages.demo")
    class DemoOptions(Options):
        level: Literal["basic", "all"] = option("basic", help="a level")

    class Demo(Stage):
        name = "demo"
        options = DemoOptions

        def run(self, ctx):
            pass

    real = registry.get_stage
    monkeypatch.setattr(registry, "get_stage", lambda n: Demo() if n == "demo" else real(n))
    base = BASE.split("\n[export]")[0]
    r = load_recipe(_write(tmp_path, base + '\n[stages]\nenable = ["demo"]\n[stages.demo]\nlevel = "all"\n'))
    assert r.stages == ("demo",) and r.stage_options["demo"].level == "all" and r.sections()["stages.demo"].level == "all"
    with pytest.raises(RecipeError, match=r"\[stages.demo\] level = 'al' is not allowed: expected one of 'basic', 'all'"):
        load_recipe(_write(tmp_path, base + '\n[stages.demo]\nlevel = "al"\n', "r2.toml"))


def test_old_config_names_stay_importable():
    from edgemm.recipe import ExportConfig, QuantizeConfig, VerifyConfig, parse_max_drop
    from edgemm.stages.options.export import ExportOptions
    from edgemm.stages.options.quantize import QuantizeOptions
    from edgemm.stages.options.verify import VerifyOptions

    assert (ExportConfig, QuantizeConfig, VerifyConfig) == (ExportOptions, QuantizeOptions, VerifyOptions)
    assert parse_max_drop("2%") == (pytest.approx(0.02), True) and parse_max_drop("none") == (None, False)


# --------------------------------------------------------------------------- [graphs.<name>]: one bundle, several graphs

DUAL = ROOT / "export" / "seed_dual_encoder.toml"


def test_graph_tables_give_one_spec_per_graph():
    r = load_recipe(DUAL)
    assert list(r.graphs) == ["image", "text"]
    assert r.graphs["image"].factory == "edgemm.zoo.seeds.dual_encoder:build_image"
    assert r.graphs["text"].spec.input("prompt").preprocessing.tokenizer == "seeds/seed_dual_encoder.tokenizer.json"
    assert r.graphs["image"].spec.output("image_embedding").task == "embedding"
    assert r.spec == r.graphs["image"].spec  # the first graph's (the bundle's default graph)
    assert r.data.calibration == "seeds/calib.npz"


def test_graph_tables_build_each_graph_from_the_model_checkpoint():
    torch = pytest.importorskip("torch")
    models = load_recipe(DUAL).build_graphs()
    assert set(models) == {"image", "text"}
    with torch.no_grad():
        assert models["text"](torch.zeros((2, 8), dtype=torch.int64)).shape == (2, 32)


def _dual(tmp_path: Path, old: str, new: str) -> Path:
    text = DUAL.read_text()
    assert old in text
    return _write(tmp_path, text.replace(old, new, 1))


@pytest.mark.parametrize("old, new, says", [
    ('factory = "edgemm.zoo.seeds.dual_encoder:build_text"', 'factroy = "x:y"', r"\[graphs.text\]: unknown key 'factroy'.*factory"),
    ('factory = "edgemm.zoo.seeds.dual_encoder:build_text"', "", r"\[graphs.text\]: missing factory"),
    ("[graphs.text]", "[graphs.'te xt']", r"graph name 'te xt' is not allowed"),
    ("[model]", '[[inputs]]\nname = "x"\nshape = [1]\ndtype = "float32"\n\n[model]', r"\[\[inputs\]\] and \[graphs.<name>\] together"),
    ('name = "seed_dual_encoder"', 'name = "seed_dual_encoder"\nfactory = "a:b"', r"\[model\] names a factory/path and \[graphs"),
])
def test_graph_table_mistakes_are_one_line(tmp_path, old, new, says):
    with pytest.raises(RecipeError, match=says):
        load_recipe(_dual(tmp_path, old, new))


def test_graph_table_without_inputs(tmp_path):
    text = DUAL.read_text()
    start = text.index("[[graphs.text.inputs]]")
    end = text.index("[[graphs.text.outputs]]")
    p = _write(tmp_path, text[:start] + text[end:])
    with pytest.raises(RecipeError, match=r"\[graphs.text\]: missing \[\[inputs\]\]"):
        load_recipe(p)
