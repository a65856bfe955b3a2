"""The realistic-size reference model avnet_m: model, recipe and shipped checkpoint (fast), and its INT8 export
(slow: fp32 + int8 for onnxruntime and openvino, the accuracy budget, the speed entry, edgemm.load's pick)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import edgemm  # noqa: E402
from edgemm.errors import EdgemmError  # noqa: E402
from edgemm.recipe import load_recipe  # noqa: E402
from edgemm.zoo import avnet_m  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "export" / "avnet_m.toml"
CHECKPOINTS = ROOT / "edgemm" / "zoo" / "checkpoints"


def test_recipe_matches_the_model_and_outputs_have_its_shapes():
    recipe = load_recipe(RECIPE)
    assert recipe.spec == avnet_m.iospec()
    assert recipe.spec.inputs[0].shape == ("batch", 3, 160, 160)
    model = avnet_m.AVNetM().eval()
    with torch.no_grad():
        digit, speaker = model(torch.randn(2, 3, 160, 160), torch.randn(2, 1, 64, 98))
    assert digit.shape == (2, 10) and speaker.shape == (2, 6)


def test_size_is_the_realistic_range():
    tp = pytest.importorskip("torch_pruning")
    model = avnet_m.AVNetM().eval()
    macs, params = tp.utils.count_ops_and_params(model, (torch.randn(1, 3, 160, 160), torch.randn(1, 1, 64, 98)))
    assert 0.3e9 <= 2 * macs <= 1.0e9  # FLOPs = 2 x multiply-adds, as pruning.json counts them
    assert 1.5e6 <= params <= 4e6


def test_shipped_checkpoint_loads_fp32_and_beats_avnet():
    ckpt = CHECKPOINTS / "avnet_m.pt"
    assert ckpt.stat().st_size < 10e6
    stored = torch.load(ckpt, weights_only=True)["model"]
    assert {v.dtype for v in stored.values() if torch.is_floating_point(v)} == {torch.float16}
    model = avnet_m.build()
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    mine = json.loads((CHECKPOINTS / "avnet_m.json").read_text())["eval"]
    avnet = json.loads((CHECKPOINTS / "avnet.json").read_text())["eval"]
    assert mine["samples"] == avnet["samples"] == 600
    assert mine["digit_top1_fused"] >= avnet["digit_top1_fused"]


def test_shipped_checkpoint_speaker_at_least_avnet():
    mine = json.loads((CHECKPOINTS / "avnet_m.json").read_text())["eval"]
    avnet = json.loads((CHECKPOINTS / "avnet.json").read_text())["eval"]
    assert mine["speaker_top1"] >= avnet["speaker_top1"]


@pytest.mark.slow
def test_recorded_accuracy_is_what_the_shipped_weights_score():
    """The eval split (600 held-out pairs) through the shipped weights, fused: the accuracy avnet_m.json records."""
    from edgemm.frontends.audio import preprocess_audio
    from edgemm.frontends.image import preprocess_image

    d = dict(np.load(ROOT / "calibration_data" / "avmnist" / "eval.npz"))
    rate = int(d["audio.sample_rate"])
    model = avnet_m.build()
    right_digit = right_speaker = 0
    with torch.no_grad():
        for s in range(0, 600, 100):
            img = torch.from_numpy(preprocess_image(d["image"][s:s + 100], avnet_m.IMAGE_PRE))
            aud = torch.from_numpy(preprocess_audio(d["audio"][s:s + 100], rate, avnet_m.AUDIO_PRE))
            dl, sl = model(img, aud)
            right_digit += int((dl.argmax(1).numpy() == d["digit"][s:s + 100]).sum())
            right_speaker += int((sl.argmax(1).numpy() == d["speaker"][s:s + 100]).sum())
    recorded = json.loads((CHECKPOINTS / "avnet_m.json").read_text())["eval"]
    assert abs(right_digit / 600 - recorded["digit_top1_fused"]) <= 1 / 600 + 1e-9
    assert abs(right_speaker / 600 - recorded["speaker_top1"]) <= 1 / 600 + 1e-9


def test_missing_or_foreign_checkpoint_is_one_line(tmp_path):
    with pytest.raises(EdgemmError, match="train_avnet_m.py"):
        avnet_m.build(tmp_path / "nope.pt")
    from edgemm.zoo import avnet

    foreign = tmp_path / "avnet.pt"
    torch.save({"model": avnet.AVNet().state_dict()}, foreign)
    with pytest.raises(EdgemmError, match="does not fit the avnet_m model"):
        avnet_m.build(foreign)


@pytest.mark.slow
def test_int8_export_is_within_budget_and_picked(tmp_path):
    """`edgemm export export/avnet_m.toml --int8`: the int8 artifacts stay within 1 point on both heads, carry
    the measured speed, and edgemm.load picks the fastest artifact of the report's ranking (every artifact timed
    the same way, in one benchmark) that no verdict marks slower. Which one that is depends on the CPU (on AMX
    the OpenVINO fp16 IR computes in bf16 and can beat int8): never asserted."""
    out = tmp_path / "avnet_m"
    edgemm.export(str(RECIPE), output=out, int8=True)
    manifest = json.loads((out / "manifest.json").read_text())
    acc = json.loads((out / manifest["reports"]["accuracy"]).read_text())
    int8 = [a for a in manifest["artifacts"] if a["precision"] == "int8"]
    assert {a["backend"] for a in int8} == {"onnxruntime", "openvino"}
    for art in acc["artifacts"].values():
        if art["precision"] == "int8":
            assert max(art["drop"].values()) <= 0.01 + 1e-9
    speeds = [a["extra"]["speed"] for a in int8]
    assert all(s["vs_fp32"] is not None and s["batch"] == 1 for s in speeds)
    ranking = json.loads((out / manifest["reports"]["latency"]).read_text())["ranking"]["p50_ms"]
    slower = {a["path"] for a in int8 if a["extra"]["speed"]["slower"]}
    rt = edgemm.load(out)
    allowed = {a: ms for a, ms in ranking.items() if a not in slower}
    best = min(allowed, key=allowed.get)
    fp32 = {a["backend"]: a["path"] for a in manifest["artifacts"] if a["precision"] == "fp32"}
    # an int8 whose verdict is inside the noise ranks as fast as its fp32 sibling, and before it
    assert rt.artifact.path == best or (rt.precision == "int8" and best == fp32[rt.backend])
    feeds = rt.preprocess(image=np.zeros((64, 64, 3), np.uint8), audio=np.zeros(8000, np.float32), sample_rate=8000)
    outs = rt.run(feeds)
    assert list(outs) == ["digit", "speaker"] and outs["digit"].shape == (1, 10)
