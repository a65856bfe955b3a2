"""Realistic-size random-init family models (5-30 M parameters per graph), saved to folders and exported with
`edgemm export DIR` at fp32: cosine >= 0.9999 on every output of every graph on onnxruntime and OpenVINO."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from edgemm.cli import main  # noqa: E402

from hf_tiny import assert_fp32_parity  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.openvino]


def _clip(folder):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    text = dict(vocab_size=49408, hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4,
                max_position_embeddings=77, projection_dim=256)
    vision = dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=6, image_size=224,
                  patch_size=32, projection_dim=256)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=256)).eval()
    model.save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return model, {"vision": ["image_embeds"], "text": ["text_embeds"]}


def _wav2vec2(folder):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    model = Wav2Vec2Model(Wav2Vec2Config(hidden_size=384, num_hidden_layers=4, num_attention_heads=6, intermediate_size=1536,
                                         conv_dim=(256,) * 7)).eval()
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor().save_pretrained(folder)
    return model, {"main": ["last_hidden_state"]}


def _whisper(folder):
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)  # whisper-tiny's encoder: d_model 384, 4 layers, 80 mel bins x 3000 frames
    model = WhisperModel(WhisperConfig(d_model=384, encoder_layers=4, decoder_layers=1, encoder_attention_heads=6,
                                       decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=256, vocab_size=1000,
                                       pad_token_id=1, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2)).eval()
    model.save_pretrained(folder)
    WhisperFeatureExtractor().save_pretrained(folder)
    return model, {"encoder": ["last_hidden_state"]}


@pytest.mark.parametrize("build", [_clip, _wav2vec2, _whisper], ids=["clip", "wav2vec2", "whisper-encoder"])
def test_realistic_size_fp32(tmp_path, build):
    model, graphs = build(tmp_path / "model")
    params = sum(p.numel() for p in model.parameters())
    assert 5e6 <= params <= 60e6, params
    start = time.monotonic()
    assert main(["-q", "export", str(tmp_path / "model"), "-o", str(tmp_path / "b"), "--target", "onnxruntime,openvino",
                 "--threads", "2"]) == 0
    assert_fp32_parity(tmp_path / "b", graphs)
    assert time.monotonic() - start < 900
