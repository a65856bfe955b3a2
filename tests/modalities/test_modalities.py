"""The modality registry and the built-in modalities: params validation (one SpecError line), the numpy
references against their kernels and against older bundles' numbers, valid-input generators, the audio sample
rate rule, BGR frames, letterbox / centre crop, video clips, Whisper's log-mel against transformers'."""
from __future__ import annotations

import numpy as np
import pytest

from edgemm.data.preprocess import preprocess_input, preprocess_raw
from edgemm.errors import SpecError
from edgemm.frontends.image import preprocess_image as frontend_image
from edgemm.iospec import AudioPreprocess, ImagePreprocess, IOSpec, TensorSpec, TextPreprocess, VideoPreprocess
from edgemm.modalities.image.reference import preprocess_image
from edgemm.modalities.registry import all_modalities, broken_modalities, get_modality


def _frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_builtins_and_unknown_names():
    assert {"image", "audio", "text", "video", "tensor"} <= set(all_modalities())
    assert isinstance(broken_modalities(), dict)
    with pytest.raises(SpecError, match=r"unknown modality 'imag' \(did you mean 'image'\?\)"):
        get_modality("imag")
    with pytest.raises(SpecError, match="unknown modality 'lidar'.*entry point"):
        TensorSpec("x", modality="lidar")


@pytest.mark.parametrize("data, match", [
    ({"resize": "lanczos"}, "image resize must be one of"),
    ({"fit": "cover"}, "image fit must be one of"),
    ({"size": [0, 4]}, "image size must be"),
    ({"std": [1, 0, 1]}, "must not contain 0"),
    ({"shortest_edge": 40}, "applies to fit = 'center_crop' only"),
    ({"sizes": [4, 4]}, r"unknown image preprocessing key 'sizes' \(did you mean 'size'\?\)"),
])
def test_image_params_are_one_line(data, match):
    with pytest.raises(SpecError, match=match) as exc:
        TensorSpec.from_dict({"name": "i", "modality": "image", "shape": [1, 3, 4, 4], "preprocessing": data}, "input")
    assert "\n" not in str(exc.value)


def test_old_manifests_round_trip_unchanged():
    """A bundle written before the new keys existed reads back equal and writes the same keys."""
    old = {"size": [64, 64], "channel_order": "RGB", "mean": [0.5] * 3, "std": [0.25] * 3, "layout": "NCHW", "resize": "bilinear"}
    t = TensorSpec.from_dict({"name": "image", "modality": "image", "shape": ["batch", 3, 64, 64], "preprocessing": old}, "input")
    assert t.to_dict("input")["preprocessing"] == old
    aud = {"sample_rate": 16000, "window_s": 1.0, "n_fft": 512, "win_length": 400, "hop": 160, "n_mels": 64, "fmin": 20.0,
           "fmax": 8000.0, "log_floor": 1e-6}
    a = TensorSpec.from_dict({"name": "audio", "modality": "audio", "shape": ["batch", 1, 64, 98], "preprocessing": aud}, "input")
    assert a.to_dict("input")["preprocessing"] == aud


def test_plain_image_matches_the_frontend_and_kernel_exactly():
    cfg = ImagePreprocess(size=(64, 64))
    t = TensorSpec("image", "float32", ("batch", 3, 64, 64), "image", cfg)
    f = _frame(120, 160)
    ref = frontend_image(f, cfg)
    np.testing.assert_array_equal(preprocess_image(f, cfg), ref)
    np.testing.assert_allclose(preprocess_input(t, f, base_dir="."), ref, atol=1e-5)
    bgr = preprocess_input(t, f[..., ::-1].copy(), base_dir=".", color="bgr")
    np.testing.assert_allclose(bgr, ref, atol=1e-5)
    with pytest.raises(SpecError, match="image color must be 'rgb' or 'bgr'"):
        preprocess_input(t, f, base_dir=".", color="hsv")


def test_letterbox_and_center_crop_geometry():
    f = np.full((40, 80, 3), 200, np.uint8)
    lb = ImagePreprocess(size=(32, 32), fit="letterbox", pad_value=0, mean=(0, 0, 0), std=(1, 1, 1))
    x = preprocess_image(f, lb)[0, 0]
    assert x.shape == (32, 32)
    assert np.allclose(x[:8], 0) and np.allclose(x[-8:], 0) and np.allclose(x[8:24], 200 / 255, atol=1e-6)  # 16 rows of frame
    cc = ImagePreprocess(size=(32, 32), fit="center_crop", resize="bicubic", mean=(0, 0, 0), std=(1, 1, 1))
    g = np.zeros((40, 80, 3), np.uint8)
    g[:, 36:44] = 255  # a bar in the middle survives the crop, the sides do not
    y = preprocess_image(g, cc)[0, 0]
    assert y[:, 14:18].mean() > 0.9 and y[:, :10].max() < 0.05


def test_audio_needs_a_sample_rate_unless_the_spec_names_one():
    spec = IOSpec((TensorSpec("audio", "float32", ("batch", 1, 64, 98), "audio", AudioPreprocess()),), (TensorSpec("y", shape=("batch", 2)),))
    wav = np.sin(np.arange(8000) * 0.3).astype(np.float32)
    with pytest.raises(SpecError, match=r"needs the sample rate of the waveform: pass audio=\(waveform, RATE\)") as exc:
        preprocess_raw(spec, {"audio": wav}, base_dir=".")
    assert "\n" not in str(exc.value)
    a = preprocess_raw(spec, {"audio": (wav, 8000)}, base_dir=".")["audio"]
    b = preprocess_raw(spec, {"audio": wav}, base_dir=".", sample_rate=8000)["audio"]
    np.testing.assert_array_equal(a, b)
    named = IOSpec((TensorSpec("audio", "float32", ("batch", 1, 64, 98), "audio", AudioPreprocess(input_rate=8000)),), spec.outputs)
    np.testing.assert_array_equal(preprocess_raw(named, {"audio": wav}, base_dir=".")["audio"], a)
    # silence is silence at any rate (verify's blank input)
    assert preprocess_input(spec.inputs[0], np.zeros(16000, np.float32), base_dir=".").shape == (1, 1, 64, 98)


def test_waveform_features_and_whisper_match_transformers():
    wav = np.random.default_rng(0).standard_normal(12000).astype(np.float32) * 0.1
    w2v = TensorSpec("input_values", "float32", ("batch", "samples"), "audio",
                     AudioPreprocess(features="waveform", normalize=True, window_s=1.0))
    x = preprocess_input(w2v, wav, base_dir=".", sample_rate=16000)
    assert x.shape == (1, 12000) and abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    transformers = pytest.importorskip("transformers")
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    want = fe(wav, sampling_rate=16000, return_tensors="np")["input_features"]
    cfg = AudioPreprocess(features="whisper_log_mel", window_s=30.0, n_fft=400, win_length=400, hop=160, n_mels=80, fmin=0.0)
    t = TensorSpec("input_features", "float32", ("batch", 80, 3000), "audio", cfg)
    got = preprocess_input(t, wav, base_dir=".", sample_rate=16000)
    assert got.shape == want.shape == (1, 80, 3000)
    assert np.abs(got - want).max() < 1e-4


def test_video_clip_layout_and_stream_buffer():
    cfg = VideoPreprocess(frames=4, stride=2, size=(16, 16))
    t = TensorSpec("clip", "float32", ("batch", 4, 3, 16, 16), "video", cfg)
    clip = np.stack([_frame(24, 32, s) for s in range(7)])
    x = preprocess_input(t, clip, base_dir=".")
    assert x.shape == (1, 4, 3, 16, 16)
    one = preprocess_image(clip[6], cfg.image)
    np.testing.assert_allclose(x[0, 3], one[0], atol=1e-6)  # the newest frame last
    np.testing.assert_allclose(x[0, 0], preprocess_image(clip[0], cfg.image)[0], atol=1e-6)  # every 2nd back from it
    adapter = get_modality("video").stream_adapter(t)
    for k in range(7):
        out = adapter(clip[k])
        assert adapter.padded == (k < 6)
    np.testing.assert_allclose(out, x, atol=1e-5)
    with pytest.raises(SpecError, match="expects a clip of 4 frames"):
        preprocess_input(t, clip[:3], base_dir=".")


def test_text_whitespace_vocab_and_tokenizers(tmp_path):
    (tmp_path / "vocab.txt").write_text("<pad>\n<unk>\nhello\nworld\n")
    old = TensorSpec("tokens", "int64", ("batch", 4), "text", TextPreprocess(max_length=4))
    assert preprocess_input(old, "Hello there world", base_dir=tmp_path).tolist() == [[2, 1, 3, 0]]
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    spec = IOSpec((TensorSpec("ids", "int64", ("batch", 5), "text", TextPreprocess("tokenizer.json", 5, attention_mask="mask")),
                   TensorSpec("mask", "int64", ("batch", 5))), (TensorSpec("y", shape=("batch", 2)),))
    feeds = preprocess_raw(spec, {"text": ["hello world", "world x world world world world"]}, base_dir=tmp_path)
    assert feeds["ids"].tolist() == [[2, 3, 0, 0, 0], [3, 1, 3, 3, 3]] and feeds["mask"].tolist() == [[1, 1, 0, 0, 0], [1] * 5]
    valid = spec.valid_feeds(batch=8, seed=1, base_dir=tmp_path)
    assert valid["ids"].max() <= 3 and valid["ids"].min() >= 0
    for row, m in zip(valid["ids"], valid["mask"]):
        n = int(m.sum())
        assert n >= 1 and (m[:n] == 1).all() and (m[n:] == 0).all() and (row[n:] == 0).all() and (row[:n] >= 2).all()
    (tmp_path / "bad.json").write_text('{"model": 3}')
    bad = TensorSpec("ids", "int64", ("batch", 5), "text", TextPreprocess("bad.json", 5))
    with pytest.raises(SpecError, match="is not a tokenizers file"):
        preprocess_input(bad, "hello", base_dir=tmp_path)


def test_valid_feeds_cover_every_builtin():
    spec = IOSpec((TensorSpec("image", "float32", ("batch", 3, 16, 16), "image", ImagePreprocess(size=(16, 16))),
                   TensorSpec("audio", "float32", ("batch", 1, 64, 98), "audio", AudioPreprocess()),
                   TensorSpec("clip", "float32", ("batch", 2, 3, 8, 8), "video", VideoPreprocess(frames=2, size=(8, 8))),
                   TensorSpec("attention_mask", "int64", ("batch", 6))), (TensorSpec("y", shape=("batch", 2)),))
    feeds = spec.check_feeds(spec.valid_feeds(batch=3, seed=0))
    m = feeds["attention_mask"]
    assert all((row[: int(row.sum())] == 1).all() for row in m)  # prefix masks, not random {0, 1}
    assert np.isfinite(feeds["audio"]).all() and feeds["image"].std() > 0.1


def test_hf_audio_extractors_are_expressed_exactly():
    transformers = pytest.importorskip("transformers")
    from edgemm.families.preprocessing import audio_from_extractor

    wav = (np.random.default_rng(2).standard_normal(20000) * 0.2).astype(np.float32)
    w2v = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    pre, data = audio_from_extractor(w2v.to_dict())
    assert data["exact"] and pre.features == "waveform"
    t = TensorSpec("input_values", "float32", ("batch", "samples"), "audio", pre)
    want = w2v(wav, sampling_rate=16000, return_tensors="np")["input_values"]
    np.testing.assert_allclose(preprocess_input(t, wav, base_dir=".", sample_rate=16000), want, atol=1e-5)
    wh = transformers.WhisperFeatureExtractor(feature_size=80)
    pre, data = audio_from_extractor(wh.to_dict())
    assert data["exact"] and pre.features == "whisper_log_mel" and pre.n_frames == 3000
    t = TensorSpec("input_features", "float32", ("batch", 80, 3000), "audio", pre)
    want = wh(wav, sampling_rate=16000, return_tensors="np")["input_features"]
    assert np.abs(preprocess_input(t, wav, base_dir=".", sample_rate=16000) - want).max() < 1e-4
    # an 8 kHz recording is resampled to the extractor's 16 kHz first
    assert preprocess_input(t, wav[::2].copy(), base_dir=".", sample_rate=8000).shape == (1, 80, 3000)


def test_broken_modality_plugins_are_listed_with_a_reason(tmp_path):
    """Entry points that fail to import, name something that is not a Modality, or take a built-in's name are
    listed by broken_modalities() with one reason each; the built-ins keep working."""
    import json
    import os
    import subprocess
    import sys

    dist = tmp_path / "broken_modalities-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-modalities\nVersion: 0.1\n")
    (tmp_path / "taken_mod.py").write_text("from edgemm.modalities.image import ImageModality\n\nclass Taken(ImageModality):\n    pass\n")
    (dist / "entry_points.txt").write_text("[edgemm.modalities]\nmissing = no_such_module_xyz:Modality\nnotone = json:loads\n"
                                           "taken = taken_mod:Taken\n")
    code = ("import json; from edgemm.modalities.registry import all_modalities, broken_modalities; "
            "print(json.dumps({'ok': sorted(all_modalities()), 'broken': broken_modalities()}))")
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(tmp_path)), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"image", "audio", "text", "video", "tensor"} <= set(out["ok"])
    assert "importing it fails" in out["broken"]["missing"] and "no_such_module_xyz" in out["broken"]["missing"]
    assert "not an edgemm Modality" in out["broken"]["notone"]
    assert "taken by another modality" in out["broken"]["taken"]
