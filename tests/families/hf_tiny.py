"""Tiny random-init models of each family (hidden 32, 2 layers, small inputs), built from configs and saved to
folders the way users save them: never a download. And the checks every family export must pass."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

VOCAB, TEXT_LEN, IMAGE, PROJ = 99, 16, 32, 16
BOS, EOS, PAD = 97, 98, 1


def tiny_clip(seed: int = 0):
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    text = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=TEXT_LEN, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, projection_dim=PROJ)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=IMAGE,
                  patch_size=8, projection_dim=PROJ)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=PROJ)).eval()


def save_clip(folder: Path, seed: int = 0):
    """A CLIP folder as save_pretrained writes it, with its image processor's config (shortest-edge resize,
    centre crop, bicubic: more than the bundle's ImagePreprocess can say)."""
    from transformers import CLIPImageProcessor

    model = tiny_clip(seed)
    model.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE}).save_pretrained(folder)
    return model


def tiny_wav2vec2(seed: int = 0):
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                         conv_dim=(16, 16, 16), conv_stride=(8, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2)
    return Wav2Vec2Model(cfg).eval()


def save_wav2vec2(folder: Path, seed: int = 0):
    from transformers import Wav2Vec2FeatureExtractor

    model = tiny_wav2vec2(seed)
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(folder)
    return model


def tiny_whisper(seed: int = 0):
    import torch
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(seed)
    cfg = WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                        encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=16, max_source_positions=30,
                        max_target_positions=16, vocab_size=VOCAB, pad_token_id=PAD, bos_token_id=2, eos_token_id=3,
                        decoder_start_token_id=2)
    return WhisperModel(cfg).eval()


def save_whisper(folder: Path, seed: int = 0):
    from transformers import WhisperFeatureExtractor

    model = tiny_whisper(seed)
    model.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=16).save_pretrained(folder)
    return model


def parity(root: Path) -> dict:
    return json.loads((Path(root) / "reports/parity.json").read_text())


def assert_fp32_parity(root: Path, graphs: dict[str, list[str]], backends=("onnxruntime", "openvino"), floor=0.9999):
    """Every fp32 artifact of every graph, on each backend, has every output at cosine >= floor."""
    report = parity(root)
    seen = set()
    for aid, entry in report["artifacts"].items():
        if entry["precision"] != "fp32" or entry["backend"] not in backends:
            continue
        g = entry.get("graph") or (aid.split("/")[1] if aid.startswith("graphs/") else "main")
        seen.add((g, entry["backend"]))
        assert set(entry["outputs"]) == set(graphs[g]), (aid, entry["outputs"])
        for name, st in entry["outputs"].items():
            assert st["cosine"] >= floor, (aid, name, st)
    assert seen == {(g, b) for g in graphs for b in backends}, seen


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
