"""Every error a new user met in their first hour points the right way (issue 28), one test per message.

Each test drives the real entry point (the CLI's ``main`` or the Python API) with the mistake a user makes and
checks that the one line names the problem and the fix, and no longer says what it used to say.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgemm
from edgemm.cli import main
from edgemm.errors import BundleError, ConfigError, RecipeError, SpecError

from models.paths import RECIPE, ROOT


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("edgemm: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_info_on_an_onnx_file_says_it_is_a_model_file(tmp_path, capsys):
    model = _tiny_onnx(tmp_path / "model.onnx")
    assert main(["info", str(model)]) == 2
    line = _one_error_line(capsys)
    assert "is an ONNX model file, not a bundle" in line
    assert f"edgemm bench {model}" in line and f"edgemm export {model} -o" in line
    assert "does not exist" not in line


def test_load_on_an_onnx_file_says_it_is_a_model_file(tmp_path):
    model = _tiny_onnx(tmp_path / "model.onnx")
    with pytest.raises(BundleError, match=r"is an ONNX model file, not a bundle.*edgemm\.export\(") as exc:
        edgemm.load(model)
    assert "does not exist" not in str(exc.value)


def test_run_given_a_raw_frame_points_to_preprocess(avnet_bundle_dir):
    frame = np.zeros((64, 64, 3), np.uint8)  # what a camera gives
    with edgemm.load(avnet_bundle_dir, backend="onnxruntime", precision="fp32") as rt:
        feeds = rt.preprocess(image=frame, audio=(np.zeros(8000, np.float32), 8000))
        with pytest.raises(SpecError) as exc:
            rt.run({**feeds, "image": frame})
        assert "rt.preprocess(image=" in str(exc.value) and "raw image data (an HxWx3 uint8 frame)" in str(exc.value)
        assert "astype" not in str(exc.value)
        with pytest.raises(SpecError, match=r"raw audio data .*rt\.preprocess\(audio="):
            rt.run({**feeds, "audio": np.zeros(16000, np.float32)})
        assert rt.run(feeds)["digit"].shape == (1, 10)  # the feeds preprocess made run


def test_recipe_input_without_shape(tmp_path):
    text = RECIPE.read_text().replace('"../', f'"{ROOT}/')
    recipe = tmp_path / "r.toml"
    recipe.write_text(text.replace('shape = ["batch", 3, 64, 64]\n', "", 1))
    with pytest.raises(RecipeError) as exc:
        edgemm.export(recipe, output=tmp_path / "b")
    assert "[[inputs]] 'image' has no shape; add one, e.g. shape = [" in str(exc.value)
    assert "expected []" not in str(exc.value)
    assert not (tmp_path / "b").exists()


def test_bench_with_an_absent_backend_says_why(avnet_bundle_dir, capsys):
    assert main(["bench", str(avnet_bundle_dir), "--backends", "tensorrt", "--modes", "model", "--batch", "1"]) == 2
    line = _one_error_line(capsys)
    assert "the bundle has no tensorrt artifact" in line and "edgemm compile" in line and "--target tensorrt" in line
    assert "the bundle has: " in line and "onnxruntime fp32" in line
    assert "('tensorrt',)" not in line and "backends=" not in line
    from edgemm.backends.registry import get_backend

    if not get_backend("tensorrt").availability().available:
        assert "tensorrt is unavailable here:" in line


def test_run_without_audio_names_the_flag(avnet_bundle_dir, capsys):
    assert main(["run", str(avnet_bundle_dir), "--video", "synthetic:video", "--max-frames", "1"]) == 2
    line = _one_error_line(capsys)
    assert "needs an audio source: add --audio SRC" in line
    assert "audio=URI" not in line


def test_run_names_its_artifact_and_warms_up(avnet_bundle_dir, capsys, tmp_path):
    out = tmp_path / "r.jsonl"
    assert main(["run", str(avnet_bundle_dir), "--video", "synthetic:video?fps=30", "--audio", "synthetic:audio?rate=16000",
                 "--max-frames", "2", "--backend", "onnxruntime", "--precision", "fp32", "--json-lines", str(out)]) == 0
    named = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("edgemm run: onnx/")]
    assert len(named) == 1 and named[0].startswith("edgemm run: onnx/model.fp32.onnx (onnxruntime fp32) from ")
    assert "warmed up with 3 calls" in named[0]
    assert len(out.read_text().splitlines()) == 2


def test_api_errors_name_keywords_and_cli_errors_flags(tmp_path, capsys, tiny_model):
    from models.tiny import tiny_feeds, tiny_spec

    with pytest.raises(ConfigError) as exc:
        edgemm.export(tiny_model(), example_inputs=tiny_feeds(2), spec=tiny_spec(), output=tmp_path / "b", int8=True,
                      calibration="synthetic", targets="onnxruntime", quantizer={"openvino": "nncf"})
    assert str(exc.value).startswith("quantizer= names target(s) ['openvino']") and "--quantizer" not in str(exc.value)
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.read_text().replace('"../', f'"{ROOT}/'))
    assert main(["export", str(recipe), "-o", str(tmp_path / "b"), "--int8", "--target", "onnxruntime",
                 "--quantizer", "openvino=nncf"]) == 2
    line = _one_error_line(capsys)
    assert "--quantizer names target(s) ['openvino']" in line and "quantizer=" not in line
    assert not (tmp_path / "b").exists()


def test_setting_spells_flags_on_the_command_line_and_keywords_in_python():
    from edgemm.errors import command_line, setting, switch

    assert (setting("max_drop"), setting("calibration", "F"), switch("qat")) == ("max_drop=", "calibration=F", "qat=True")
    with command_line():
        assert (setting("max_drop"), setting("calibration", "F"), switch("qat")) == ("--max-drop", "--calib F", "--qat")
    assert setting("max_drop") == "max_drop="


def test_int8_without_calibration_names_the_keyword_in_python_and_the_flag_on_the_cli(tmp_path, capsys, tiny_model):
    from models.tiny import tiny_feeds, tiny_spec

    with pytest.raises(SpecError) as exc:
        edgemm.export(tiny_model(), example_inputs=tiny_feeds(2), spec=tiny_spec(), output=tmp_path / "b", int8=True,
                      targets="onnxruntime")
    said = str(exc.value)
    assert said.startswith("int8=True needs calibration data: pass calibration=DIR_OR_NPZ") and "--calib" not in said
    assert 'calibration="synthetic"' in said
    assert not (tmp_path / "b").exists()
    onnx = _tiny_onnx(tmp_path / "relu.onnx")
    assert main(["export", str(onnx), "--int8", "--target", "onnxruntime", "-o", str(tmp_path / "b")]) == 2
    line = _one_error_line(capsys)
    assert "--int8 needs calibration data: pass --calib DIR_OR_NPZ" in line and "--calib synthetic" in line
    assert "calibration=" not in line and "int8=True" not in line
    assert not (tmp_path / "b").exists()


def test_quantize_budget_errors_name_keyword_or_flag():
    from edgemm.errors import command_line
    from edgemm.stages.options.quantize import parse_mae_increase, parse_max_drop

    with pytest.raises(edgemm.EdgemmError, match=r"^max_drop='lots' is not a number"):
        parse_max_drop("lots")
    with pytest.raises(edgemm.EdgemmError, match=r"^max_mae_increase=-1 must be"):
        parse_mae_increase(-1)
    with command_line():
        with pytest.raises(edgemm.EdgemmError, match=r"^--max-drop 'lots' is not a number"):
            parse_max_drop("lots")
        with pytest.raises(edgemm.EdgemmError, match=r"^--max-mae-increase -1 must be"):
            parse_mae_increase(-1)
