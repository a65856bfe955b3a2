"""Hugging Face audio families from save_pretrained folders: Wav2Vec2 (raw waveform -> last_hidden_state) and
Whisper's encoder (log-mel -> last_hidden_state), exported with `edgemm export DIR` (fp32 parity on onnxruntime
and OpenVINO) and compared with the transformers model itself."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import edgemm  # noqa: E402
from edgemm.bundle import Bundle  # noqa: E402
from edgemm.cli import main  # noqa: E402

from hf_tiny import assert_fp32_parity, save_wav2vec2, save_whisper  # noqa: E402

pytestmark = pytest.mark.openvino


def _export(folder, out):
    assert main(["-q", "export", str(folder), "-o", str(out), "--target", "onnxruntime,openvino", "--threads", "2"]) == 0
    return Bundle.open(out)


def test_wav2vec2_folder(tmp_path):
    model = save_wav2vec2(tmp_path / "w2v")
    b = _export(tmp_path / "w2v", tmp_path / "b")
    spec = b.spec
    assert b.graphs() == ["main"] and "hf-wav2vec2" in b.manifest["model"]["source"]
    assert spec.input_names == ["input_values"] and spec.input("input_values").shape == ("batch", 16000)
    assert spec.input("input_values").modality == "audio"
    assert spec.output_names == ["last_hidden_state"]  # extract_features left out: the family keeps the encoder's states
    assert_fp32_parity(b.root, {"main": ["last_hidden_state"]})
    entry = b.manifest["graphs"]["main"]
    assert "valid feeds" in entry["parity"]["source"]
    pre = entry["family"]["preprocessing"]["input_values"]
    assert pre["sampling_rate"] == 16000 and pre["do_normalize"] is True and pre["exact"] is True  # the extractor is expressed exactly (modalities.audio)
    with np.load(b.root / entry["parity"]["path"]) as f:  # normalised waveforms: zero mean, unit variance per row
        wave = f["input_values"]
    np.testing.assert_allclose(wave.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(wave.std(1), 1, atol=1e-3)
    x = np.random.default_rng(3).standard_normal((2, 16000)).astype(np.float32)
    with torch.no_grad():
        want = model(input_values=torch.from_numpy(x)).last_hidden_state.numpy()
    with edgemm.load(b.root, backend="openvino", precision="fp32") as rt:
        np.testing.assert_allclose(rt.run({"input_values": x})["last_hidden_state"], want, rtol=1e-3, atol=1e-4)


def test_whisper_encoder_folder(tmp_path):
    model = save_whisper(tmp_path / "whisper")
    b = _export(tmp_path / "whisper", tmp_path / "b")
    assert b.graphs() == ["encoder"]
    spec = b.graph("encoder").spec
    assert spec.input_names == ["input_features"] and spec.input("input_features").shape == ("batch", 16, 60)
    assert spec.output_names == ["last_hidden_state"] and spec.outputs[0].shape == ("batch", 30, 32)
    assert_fp32_parity(b.root, {"encoder": ["last_hidden_state"]})
    entry = b.manifest["graphs"]["encoder"]
    assert entry["family"]["preprocessing"]["input_features"]["feature_extractor_type"] == "WhisperFeatureExtractor"
    with np.load(b.root / entry["parity"]["path"]) as f:  # Whisper's log-mel range: (log10 floored at max-8, +4) / 4
        mel = f["input_features"]
    floor = mel.max(axis=(1, 2)) - 2.0  # max - 8 in log10 units, after the / 4
    assert mel.shape == (32, 16, 60) and (mel.min(axis=(1, 2)) >= floor - 1e-5).all() and len(np.unique(mel.max(axis=(1, 2)))) > 1
    x = np.random.default_rng(4).uniform(-1, 1, (3, 16, 60)).astype(np.float32)
    with torch.no_grad():
        want = model.get_encoder()(input_features=torch.from_numpy(x)).last_hidden_state.numpy()
    with edgemm.load(b.root, backend="onnxruntime", precision="fp32") as rt:
        np.testing.assert_allclose(rt.run({"input_features": x})["last_hidden_state"], want, rtol=1e-4, atol=1e-5)


def test_live_models_are_recognised_without_a_folder(tmp_path):
    """Wav2Vec2Model / WhisperModel passed from Python: the family names the inputs and outputs."""
    from edgemm.families import resolve_module

    from hf_tiny import tiny_wav2vec2, tiny_whisper

    r = resolve_module(tiny_whisper())
    assert list(r.graphs) == ["encoder"] and r.spec.output_names == ["last_hidden_state"]
    r = resolve_module(tiny_wav2vec2())
    assert r.spec.input_names == ["input_values"] and r.spec.output_names == ["last_hidden_state"]
    ex = r.graphs["main"].example_inputs["input_values"]
    assert ex.shape == (2, 16000) and ex.dtype == np.float32
