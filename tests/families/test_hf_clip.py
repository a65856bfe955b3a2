"""Hugging Face CLIP through the families: a save_pretrained folder exported with `edgemm export DIR` into one
bundle with graphs vision and text (fp32 parity on valid feeds, onnxruntime + OpenVINO), verified with
`edgemm verify`, run per graph and compared with CLIPModel itself; the model passed as it is from Python."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import edgemm  # noqa: E402
from edgemm.bundle import Bundle  # noqa: E402
from edgemm.cli import main  # noqa: E402

from hf_tiny import BOS, EOS, IMAGE, PAD, PROJ, TEXT_LEN, VOCAB, assert_fp32_parity, cosine, save_clip, tiny_clip  # noqa: E402

pytestmark = pytest.mark.openvino
GRAPHS = {"vision": ["image_embeds"], "text": ["text_embeds"]}


@pytest.fixture(scope="module")
def clip_bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clip")
    model = save_clip(tmp / "clip")
    out = tmp / "bundle"
    assert main(["-q", "export", str(tmp / "clip"), "-o", str(out), "--target", "onnxruntime,openvino", "--threads", "2"]) == 0
    return model, out


def test_two_graphs_named_from_the_model_output(clip_bundle):
    _, out = clip_bundle
    b = Bundle.open(out)
    assert b.graphs() == ["vision", "text"]
    vision, text = b.graph("vision").spec, b.graph("text").spec
    assert vision.input_names == ["pixel_values"] and vision.output_names == ["image_embeds"]
    assert vision.input("pixel_values").shape == ("batch", 3, IMAGE, IMAGE)
    assert text.input_names == ["input_ids", "attention_mask"] and text.output_names == ["text_embeds"]
    assert text.input("input_ids").dtype == "int64" and text.input("input_ids").shape == ("batch", TEXT_LEN)
    assert text.outputs[0].shape == ("batch", PROJ)
    assert "hf-clip" in b.manifest["model"]["source"] and b.manifest["model"]["sha256"]


def test_fp32_parity_of_every_output_of_every_graph(clip_bundle):
    _, out = clip_bundle
    assert_fp32_parity(out, GRAPHS)


def test_parity_runs_on_valid_feeds(clip_bundle):
    """Token ids inside the vocabulary, BOS first and EOS closing the masked prefix; masks are prefixes of ones."""
    _, out = clip_bundle
    b = Bundle.open(out)
    text = b.manifest["graphs"]["text"]["parity"]
    assert "valid feeds" in text["source"] and "hf-clip" in text["source"]
    with np.load(out / text["path"]) as f:
        ids, mask = f["input_ids"], f["attention_mask"]
    assert len(ids) == 32 and ids.min() >= 0 and ids.max() < VOCAB
    lengths = mask.sum(1)
    assert (lengths >= 3).all() and len(set(lengths.tolist())) > 1
    for row, m, n in zip(ids, mask, lengths):
        assert (m[:n] == 1).all() and (m[n:] == 0).all()  # a prefix of ones
        assert row[0] == BOS and row[n - 1] == EOS and (row[n:] == PAD).all()
        assert not np.isin(row[1:n - 1], [BOS, EOS, PAD]).any()
    with np.load(out / b.manifest["graphs"]["vision"]["parity"]["path"]) as f:
        pixels = f["pixel_values"]
    assert pixels.shape == (32, 3, IMAGE, IMAGE) and np.isfinite(pixels).all() and pixels.std() > 0.1


def test_preprocessing_from_the_folder(clip_bundle):
    """preprocessor_config.json: shortest-edge resize, centre crop, bicubic and mean/std, all in the IOSpec (exact);
    the processor's settings also kept as data."""
    _, out = clip_bundle
    b = Bundle.open(out)
    pre = b.graph("vision").spec.input("pixel_values").preprocessing
    assert pre.size == (IMAGE, IMAGE)
    assert pre.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073)) and pre.std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    family = b.manifest["graphs"]["vision"]["family"]
    data = family["preprocessing"]["pixel_values"]
    assert family["name"] == "hf-clip"
    assert data["resample"] == "bicubic" and data["center_crop"] == [IMAGE, IMAGE] and data["resize_shortest_edge"] == IMAGE
    assert data["exact"] is True and "not_expressed" not in data
    assert (pre.resize, pre.fit, pre.shortest_edge) == ("bicubic", "center_crop", IMAGE)
    text = b.manifest["graphs"]["text"]["family"]
    assert text["tokenizer"] == {"file": "tokenizer.json", "present": False, "shipped": False}


def save_clip_with_processor(folder):
    """A CLIP folder as transformers 5 writes it with a CLIPProcessor: ``processor_config.json`` (the image processor
    nested in it, no preprocessor_config.json) and the tokenizer's ``tokenizer.json`` (a character-level BPE whose
    start/end-of-text ids are the model's BOS/EOS)."""
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    model = tiny_clip(3)
    model.save_pretrained(folder)
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = [*letters, *(c + "</w>" for c in letters)]
    tokens += [f"<unused{i}>" for i in range(BOS - len(tokens))] + ["<|startoftext|>", "<|endoftext|>"]
    src = folder.parent / "bpe"
    src.mkdir()
    (src / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (src / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(src / "vocab.json"), str(src / "merges.txt"))
    image = CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE})
    CLIPProcessor(image_processor=image, tokenizer=tokenizer).save_pretrained(folder)
    assert not (folder / "preprocessor_config.json").exists() and (folder / "processor_config.json").is_file()
    return model, tokenizer


def test_processor_folder_ships_the_tokenizer(tmp_path):
    """transformers 5's processor_config.json gives the image pre-processing; the folder's tokenizer.json travels into
    the bundle, so rt.preprocess(input_ids=[strings]) gives the Hugging Face tokenizer's ids and mask from the bundle
    alone, and the text graph run on them matches CLIPModel."""
    import shutil

    model, tokenizer = save_clip_with_processor(tmp_path / "clip")
    out = tmp_path / "bundle"
    assert main(["-q", "export", str(tmp_path / "clip"), "-o", str(out), "--target", "onnxruntime", "--threads", "2"]) == 0
    shutil.rmtree(tmp_path / "clip")  # the bundle needs nothing beside it
    b = Bundle.open(out)
    pre = b.graph("vision").spec.input("pixel_values").preprocessing
    assert pre.size == (IMAGE, IMAGE) and pre.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert b.manifest["graphs"]["vision"]["family"]["preprocessing"]["pixel_values"]["center_crop"] == [IMAGE, IMAGE]
    text_pre = b.graph("text").spec.input("input_ids").preprocessing
    assert text_pre.tokenizer == "graphs/text/assets/tokenizer.json" and (out / text_pre.tokenizer).is_file()
    assert text_pre.max_length == TEXT_LEN and text_pre.attention_mask == "attention_mask"
    assert b.manifest["graphs"]["text"]["family"]["tokenizer"]["shipped"] is True
    texts = ["a photo of a cat", "dog"]
    want = tokenizer(texts, padding="max_length", max_length=TEXT_LEN, truncation=True, return_tensors="np")
    with edgemm.load(out, graph="text", backend="onnxruntime", precision="fp32") as rt:
        feeds = rt.preprocess(input_ids=texts)
        np.testing.assert_array_equal(feeds["input_ids"], want["input_ids"])
        np.testing.assert_array_equal(feeds["attention_mask"], want["attention_mask"])
        assert feeds["input_ids"][0, 0] == BOS and EOS in feeds["input_ids"][1]
        got = rt.run(feeds)["text_embeds"]
    with torch.no_grad():
        ref = model.get_text_features(input_ids=torch.from_numpy(feeds["input_ids"]), attention_mask=torch.from_numpy(feeds["attention_mask"]))
    ref = getattr(ref, "text_embeds", getattr(ref, "pooler_output", ref)) if not isinstance(ref, torch.Tensor) else ref
    ref = ref / ref.norm(dim=-1, keepdim=True)
    assert cosine(got, ref.numpy()) > 0.99999


def test_verify_and_runtime_match_clipmodel(clip_bundle, capsys):
    model, out = clip_bundle
    assert main(["verify", str(out)]) == 0
    report = json.loads((out / "reports/parity.json").read_text())
    assert set(report["graphs"]) == {"vision", "text"}
    rng = np.random.default_rng(5)
    pixels = rng.standard_normal((3, 3, IMAGE, IMAGE)).astype(np.float32)
    ids = np.full((3, TEXT_LEN), PAD, np.int64)
    mask = np.zeros((3, TEXT_LEN), np.int64)
    for i, n in enumerate((4, 9, TEXT_LEN)):
        ids[i, :n] = [BOS, *rng.integers(2, 90, n - 2), EOS]
        mask[i, :n] = 1
    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), pixel_values=torch.from_numpy(pixels))
    for backend in ("onnxruntime", "openvino"):
        with edgemm.load(out, graph="vision", backend=backend, precision="fp32") as rt:
            got = rt.run({"pixel_values": pixels})["image_embeds"]
        assert cosine(got, want.image_embeds.numpy()) > 0.99999
        with edgemm.load(out, graph="text", backend=backend, precision="fp32") as rt:
            got = rt.run({"input_ids": ids, "attention_mask": mask})["text_embeds"]
        np.testing.assert_allclose(got, want.text_embeds.numpy(), rtol=1e-4, atol=1e-5)


def test_clipmodel_passed_as_it_is_from_python(tmp_path):
    """The issue's first try: edgemm.export(CLIPModel) -> two graphs, no AttributeError, no output_0."""
    model = tiny_clip(1)
    b = edgemm.export(model, output=tmp_path / "b", targets=["onnxruntime"], threads=2)
    assert b.graphs() == ["vision", "text"]
    assert "CLIPModel" in b.manifest["model"]["source"]
    assert_fp32_parity(b.root, GRAPHS, backends=("onnxruntime",))
    # the user's own example inputs, given flat by input name, are what the text graph is traced on and checked with
    ids = np.array([[BOS, 5, 6, EOS] + [PAD] * (TEXT_LEN - 4)] * 2, np.int64)
    mask = (np.arange(TEXT_LEN) < 4).astype(np.int64)[None].repeat(2, 0)
    pixels = np.zeros((2, 3, IMAGE, IMAGE), np.float32)
    b = edgemm.export(model, example_inputs={"input_ids": ids, "attention_mask": mask, "pixel_values": pixels},
                      output=tmp_path / "b2", targets=["onnxruntime"], threads=2)
    assert b.graphs() == ["vision", "text"]


def test_the_towers_with_projection_alone(tmp_path):
    """CLIPVisionModelWithProjection / CLIPTextModelWithProjection from Python: one graph each, named from the
    model's output (image_embeds / text_embeds, as the model returns them)."""
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    from edgemm.families import resolve_module

    clip = tiny_clip(2)
    vision = CLIPVisionModelWithProjection(clip.config.vision_config).eval()
    r = resolve_module(vision)
    assert list(r.graphs) == ["vision"] and r.spec.output_names == ["image_embeds"]
    text = CLIPTextModelWithProjection(clip.config.text_config).eval()
    b = edgemm.export(text, output=tmp_path / "b", targets=["onnxruntime"], threads=2)
    assert b.graphs() == ["text"] and b.graph("text").spec.output_names == ["text_embeds"]
    assert_fp32_parity(b.root, {"text": ["text_embeds"]}, backends=("onnxruntime",))
