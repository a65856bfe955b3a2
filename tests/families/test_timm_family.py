"""timm image models: recognised by their pretrained_cfg (input size, mean/std, interpolation, crop), exported
with valid image feeds; a folder in timm's hub layout loads through timm when timm can be imported, and is one
line naming the torchvision fix when it cannot (timm imports torchvision; PyPI's build fails beside a CPU torch)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgemm  # noqa: E402
from edgemm.bundle import Bundle  # noqa: E402
from edgemm.cli import main  # noqa: E402
from edgemm.errors import EdgemmError  # noqa: E402
from edgemm.families.deps import import_timm  # noqa: E402

from hf_tiny import assert_fp32_parity  # noqa: E402
from timm_like import CFG, TimmLikeNet  # noqa: E402


def _timm_or_reason():
    try:
        return import_timm(), None
    except EdgemmError as exc:
        return None, str(exc)


@pytest.mark.openvino
def test_a_module_with_timm_pretrained_cfg(tmp_path):
    torch.manual_seed(0)
    model = TimmLikeNet().eval()
    b = edgemm.export(model, output=tmp_path / "b", targets=["onnxruntime", "openvino"], threads=2)
    spec = b.spec
    assert "timm family" in b.manifest["model"]["source"]
    pixel = spec.input("pixel_values")
    assert pixel.shape == ("batch", 3, 40, 40) and pixel.modality == "image"
    assert pixel.preprocessing.size == (40, 40)
    assert pixel.preprocessing.mean == pytest.approx(CFG["mean"]) and pixel.preprocessing.std == pytest.approx(CFG["std"])
    assert spec.output_names == ["logits"] and spec.outputs[0].shape == ("batch", 5)
    family = b.manifest["graphs"]["main"]["family"]
    data = family["preprocessing"]["pixel_values"]
    assert family["name"] == "timm" and data["resample"] == "bicubic" and data["crop_pct"] == 0.875 and not data["exact"]
    assert "valid feeds" in b.manifest["graphs"]["main"]["parity"]["source"]
    assert_fp32_parity(b.root, {"main": ["logits"]})


def test_without_a_head_the_output_is_features(tmp_path):
    model = TimmLikeNet(num_classes=0).eval()
    from edgemm.families import resolve_module

    r = resolve_module(model)
    assert r.spec.output_names == ["features"] and r.spec.outputs[0].shape == ("batch", 8)


def _hub_folder(folder, model, architecture):
    """timm's hub layout, as timm.models.save_for_hf writes it: config.json (architecture, num_classes,
    pretrained_cfg) and model.safetensors."""
    from safetensors.torch import save_file

    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in model.pretrained_cfg.items()}
    (folder / "config.json").write_text(json.dumps({"architecture": architecture, "num_classes": model.num_classes,
                                                     "label_names": [f"class{i}" for i in range(model.num_classes)],
                                                     "pretrained_cfg": cfg}))


def test_a_timm_folder_where_timm_cannot_import_is_one_line(tmp_path, capsys):
    """What a user with PyPI's torchvision (or none) beside a CPU torch gets: one line saying what to do."""
    timm, _ = _timm_or_reason()
    if timm is not None:
        pytest.skip("timm imports here (a torchvision built for this torch is installed)")
    _hub_folder(tmp_path / "m", TimmLikeNet(), "timm_like_net")
    assert main(["export", str(tmp_path / "m"), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "torchvision" in err and "--index-url https://download.pytorch.org/whl/cpu" in err
    if importlib.util.find_spec("timm") is None:  # not installed: how to install it without the trap
        assert "'timm' is not installed" in err and "pip install timm" in err
    else:  # installed, but its torchvision import fails
        assert "cannot import timm" in err and "edgemm itself does not need torchvision" in err
    assert not (tmp_path / "b").exists()


def test_a_timm_folder(tmp_path):
    timm, reason = _timm_or_reason()
    if timm is None:
        pytest.skip(f"timm cannot be imported here: {reason}")
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=4).eval()
    timm.models.save_for_hf(model, str(tmp_path / "m"), safe_serialization=True)
    assert main(["-q", "export", str(tmp_path / "m"), "-o", str(tmp_path / "b"), "--target", "onnxruntime", "--threads", "2"]) == 0
    b = Bundle.open(tmp_path / "b")
    assert b.spec.input("pixel_values").shape == ("batch", *model.pretrained_cfg["input_size"])
    assert_fp32_parity(b.root, {"main": ["logits"]}, backends=("onnxruntime",))
    x = np.random.default_rng(0).standard_normal((2, *model.pretrained_cfg["input_size"])).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    with edgemm.load(b.root, backend="onnxruntime") as rt:
        np.testing.assert_allclose(rt.run({"pixel_values": x})["logits"], want, rtol=1e-4, atol=1e-4)


def test_a_timm_folder_with_labels_and_no_weights(tmp_path):
    model = TimmLikeNet()
    _hub_folder(tmp_path / "m", model, "timm_like_net")
    (tmp_path / "m" / "model.safetensors").unlink()
    timm, _ = _timm_or_reason()
    with pytest.raises(EdgemmError, match="torchvision" if timm is None else "no weights"):  # no timm: its line first
        edgemm.export(tmp_path / "m", output=tmp_path / "b")
