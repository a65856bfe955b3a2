"""Stream over a two-graph CLIP-style bundle: the text graph runs once on the prompts (constants=), the image graph
on every frame, and ZeroShot combines them (logits = 100 * image_emb @ text_emb.T, normalised). The bundle's text
input has a real tokenizer (tokenizer.json of the tokenizers library, shipped in the bundle)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import edgemm
from edgemm.errors import EdgemmError
from edgemm.runtime.stream import Stream, ZeroShot

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

DIM, TOKENS = 16, 8
WORDS = ["a", "photo", "of", "the", "digit", "zero", "one", "two", "three"]
PROMPTS = [f"a photo of the digit {w}" for w in ("zero", "one", "two", "three")]


class ImageTower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.proj = torch.nn.Linear(8, DIM)

    def forward(self, pixels):
        return self.proj(torch.relu(self.conv(pixels)).mean(dim=(2, 3)))


class TextTower(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(len(WORDS) + 2, 24)
        self.proj = torch.nn.Linear(24, DIM)

    def forward(self, tokens, mask):
        m = mask.unsqueeze(-1).to(torch.float32)
        return self.proj(torch.tanh((self.embed(tokens) * m).sum(1) / m.sum(1).clamp(min=1.0)))


def _tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))


@pytest.fixture(scope="module")
def clip_style(tmp_path_factory):
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("clipstyle")
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, len(WORDS) + 2, (2, TOKENS)).astype(np.int64)
    out = tmp / "bundle"
    edgemm.export({"image": ImageTower().eval(), "text": TextTower().eval()},
                  example_inputs={"image": {"pixels": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)},
                                  "text": {"tokens": tokens, "mask": np.ones_like(tokens)}},
                  output=out, targets=["onnxruntime"], threads=2, verify=False)
    # What a recipe's [inputs.preprocessing] tables write, with the tokenizer shipped at layout.asset_path("text", ...).
    manifest = json.loads((out / "manifest.json").read_text())
    image_in = manifest["graphs"]["image"]["inputs"][0]
    image_in.update(modality="image", preprocessing={"size": [16, 16], "mean": [0.5] * 3, "std": [0.25] * 3, "channel_order": "RGB",
                                                     "layout": "NCHW", "resize": "bilinear"})
    tok_in = manifest["graphs"]["text"]["inputs"][0]
    tok_in.update(modality="text", preprocessing={"tokenizer": "graphs/text/assets/tokenizer.json", "max_length": TOKENS,
                                                  "pad_id": 0, "attention_mask": "mask"})
    (out / "graphs/text/assets").mkdir(parents=True)
    _tokenizer(out / "graphs/text/assets/tokenizer.json")
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_text_runs_once_image_per_frame_zero_shot(clip_style, no_stream_threads):
    rt = edgemm.load(clip_style, backend="onnxruntime")
    text_rt, image_rt = rt.graph("text"), rt.graph("image")
    calls = {"text": 0}
    real_run = text_rt.run

    def counted(feeds):  # the real runner, counted
        calls["text"] += 1
        return real_run(feeds)

    text_rt.run = counted
    feeds = text_rt.preprocess(tokens=PROMPTS)
    assert feeds["tokens"].shape == (4, TOKENS) and feeds["mask"].tolist()[0] == [1] * 6 + [0] * 2
    img_out = image_rt.spec.output_names[0]
    txt_out = text_rt.spec.output_names[0]
    zs = ZeroShot(image=img_out, text=txt_out, labels=["0", "1", "2", "3"])
    frames = 6
    with Stream(rt, graph="image", video=f"synthetic:video?fps=10&frames={frames}&size=64x48",
                constants={"text": {"tokens": PROMPTS}}, combine=zs, keep_frames=True) as s:
        results = list(s)
    assert calls["text"] == 1  # the prompts' embeddings were computed once, before the first frame
    assert len(results) == frames
    text_emb = s.constants["text"][txt_out]
    assert text_emb.shape == (4, DIM)
    calls["text"] = 0
    np.testing.assert_allclose(text_emb, text_rt.run(text_rt.preprocess(tokens=PROMPTS))[txt_out], rtol=1e-6)
    for r in results:
        img = image_rt.run(image_rt.preprocess(pixels=r.frame.rgb()))[img_out]
        a = img / np.linalg.norm(img, axis=-1, keepdims=True)
        b = text_emb / np.linalg.norm(text_emb, axis=-1, keepdims=True)
        np.testing.assert_allclose(r.raw["zero_shot"], 100 * a @ b.T, rtol=1e-4, atol=1e-4)
        label, score = r.outputs["zero_shot"]
        assert label == str(int(np.argmax(r.raw["zero_shot"][0]))) and 0.25 <= score <= 1.0
    rt.close()


def test_bundle_path_and_graph_errors(clip_style, no_stream_threads):
    with Stream(str(clip_style), graph="image", video="synthetic:video?frames=2", backend="onnxruntime",
                constants={"text": {"tokens": PROMPTS[:2]}}, combine=ZeroShot(image="output_0", text="output_0")) as s:
        pass
    with pytest.raises(EdgemmError, match="name the one that runs per frame"):
        Stream(str(clip_style), video="synthetic:video?frames=2", backend="onnxruntime")
    with pytest.raises(EdgemmError, match="constants names graph 'txt'"):
        Stream(str(clip_style), graph="image", video="synthetic:video?frames=2", constants={"txt": {"tokens": ["a"]}})
    with pytest.raises(EdgemmError, match="cannot also be a constant"):
        Stream(str(clip_style), graph="text", video="synthetic:video?frames=2", constants={"text": {"tokens": ["a"]}})
