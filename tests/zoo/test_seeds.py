"""The seed models of edgemm.zoo.seeds: shipped checkpoints, data and tokenizers (fast), and each recipe through
the pipeline (slow: fp32 + int8 for onnxruntime, the budgets, edgemm.load)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgemm
from edgemm.bundle import Bundle
from edgemm.errors import EdgemmError

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from edgemm.zoo.seeds import SEEDS, av_text, captions, data, dual_bundle, dual_encoder, multitask, text_image, zero_shot  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ROOT / "export"
CHECKPOINTS = ROOT / "edgemm" / "zoo" / "checkpoints"
CHANCE = 0.1


def shipped(name: str) -> dict:
    return json.loads((CHECKPOINTS / f"{name}.json").read_text())["eval"]


@pytest.fixture(scope="session")
def eval_split() -> dict:
    return dict(np.load(EXPORT / "seeds" / "eval.npz"))


@pytest.fixture(scope="session")
def eval_tensors(eval_split) -> dict:
    f = data.features(eval_split)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in f.items()}


def top1(logits, labels) -> float:
    return float((logits.argmax(1).numpy() == labels).mean())


# --------------------------------------------------------------------------- shipped files (fast)


def test_checkpoints_are_small_and_every_seed_has_a_recipe():
    for name in SEEDS:
        assert (CHECKPOINTS / f"{name}.pt").stat().st_size < 3e6, name
        assert (EXPORT / f"{name}.toml").is_file(), name


def test_eval_split_is_held_out_and_calibration_is_training_material(eval_split):
    calib = np.load(EXPORT / "seeds" / "calib.npz")
    assert len(eval_split["digit"]) == 600
    takes = lambda files: {int(str(f).rsplit("_", 1)[1].split(".")[0]) for f in files}  # noqa: E731
    assert takes(eval_split["fsdd_file"]) <= set(range(40, 50)) and takes(calib["fsdd_file"]) <= set(range(40))
    assert eval_split["mnist_index"].min() >= 8000 and calib["mnist_index"].max() < 8000
    assert eval_split["duration"].dtype == np.float32 and 0.1 < eval_split["duration"].mean() < 1.0


def test_shipped_tokenizers_give_the_stored_token_ids(eval_split):
    for name, key in (("seed_text_image", "caption"), ("seed_av_text", "caption"), ("seed_dual_encoder", "prompt")):
        tok = captions.load_tokenizer(EXPORT / "seeds" / f"{name}.tokenizer.json")
        np.testing.assert_array_equal(captions.encode(tok, eval_split[f"{key}_text"]), eval_split[key])


@pytest.mark.parametrize("name", ["seed_text_image", "seed_av_text"])
def test_caption_recipes_take_strings(eval_split, name):
    """The recipe declares the caption's tokenizer: strings become the stored token ids, and the parity generator's
    feeds are sentences of the tokenizer's own words (ids inside the vocabulary, not 0/1)."""
    from edgemm.data.preprocess import preprocess_input
    from edgemm.recipe import load_recipe

    r = load_recipe(EXPORT / f"{name}.toml")
    t = r.spec.input("caption")
    assert t.modality == "text" and t.preprocessing.tokenizer == f"seeds/{name}.tokenizer.json"
    assert (t.preprocessing.max_length, t.preprocessing.pad_id) == (8, 0)
    ids = preprocess_input(t, list(eval_split["caption_text"][:64]), base_dir=r.base_dir, batched=True)
    np.testing.assert_array_equal(ids, eval_split["caption"][:64])
    vocab = captions.load_tokenizer(EXPORT / "seeds" / f"{name}.tokenizer.json").get_vocab_size()
    feeds = r.spec.valid_feeds(32, 1, base_dir=r.base_dir)["caption"]
    assert feeds.dtype == np.int64 and feeds.shape == (32, 8) and feeds.max() < vocab and feeds.max() > 1
    assert (feeds[:, 0] > 1).all()  # every row starts with a real word


def test_captions_never_name_the_digit(eval_split):
    """Every caption fits at least two digits (the caption alone cannot give the label), and each eval caption is
    true of its sample's digit."""
    fits = captions.caption_digits()
    assert min(len(v) for v in fits.values()) >= 2
    for text, d in zip(eval_split["caption_text"], eval_split["digit"]):
        assert int(d) in fits[str(text)], (text, d)
    words = set(captions.caption_words())
    assert not words & {*captions.NUMBER_WORDS[:4], *captions.NUMBER_WORDS[6:], *map(str, range(10))}


def test_missing_checkpoint_is_one_line(tmp_path):
    with pytest.raises(EdgemmError, match="not found; train it with `python scripts/train_seeds.py --model seed_text_image`"):
        text_image.build(tmp_path / "nope.pt")


# --------------------------------------------------------------------------- checkpoints on the eval split (fast)


@torch.no_grad()
def test_text_image_uses_the_caption(eval_split, eval_tensors):
    m = text_image.build()
    y = eval_split["digit"]
    fused = top1(m(eval_tensors["image"], eval_tensors["caption"]), y)
    neutral = torch.from_numpy(captions.encode(captions.caption_tokenizer(), captions.neutral_captions(len(y))))
    image_only = top1(m(eval_tensors["image"], neutral), y)
    assert fused == pytest.approx(shipped("seed_text_image")["digit_top1"], abs=2e-3)
    assert fused > 0.8 and fused > image_only + 0.03, (fused, image_only)  # the caption settles hard frames


@torch.no_grad()
def test_multitask_classifies_and_regresses(eval_split, eval_tensors):
    logits, dur = multitask.build()(eval_tensors["audio"])
    y, t = eval_split["digit"], eval_split["duration"]
    acc = top1(logits, y)
    mae = float(np.abs(dur.numpy()[:, 0] - t).mean())
    assert acc == pytest.approx(shipped("seed_multitask")["digit_top1"], abs=2e-3) and acc > 0.8
    assert mae < 0.75 * np.abs(t - t.mean()).mean(), mae  # clearly better than predicting the mean duration


@torch.no_grad()
def test_av_text_weighs_the_modalities(eval_split, eval_tensors):
    m = av_text.build()
    args = (eval_tensors["image"], eval_tensors["audio"], eval_tensors["caption"])
    acc = top1(m(*args), eval_split["digit"])
    w = m.modality_weights(*args).numpy()
    assert acc == pytest.approx(shipped("seed_av_text")["digit_top1"], abs=2e-3) and acc > 0.9
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-5)
    assert w.std(axis=0).max() > 0.01  # the weights depend on the sample, not one fixed mix


@torch.no_grad()
def test_dual_encoder_zero_shot_in_torch(eval_split, eval_tensors):
    m = dual_encoder.build()
    classes = zero_shot.class_embeddings(lambda ids: m.text(torch.from_numpy(ids)).numpy(), captions.prompt_tokenizer())
    acc = zero_shot.top1(m.image(eval_tensors["image"]).numpy(), classes, eval_split["digit"])
    assert acc == pytest.approx(shipped("seed_dual_encoder")["zero_shot_top1"], abs=2e-3) and acc > 0.8


def test_dual_recipe_reads_two_graphs_and_refuses_bad_tables(tmp_path):
    r = dual_bundle.read_recipe(EXPORT / "seed_dual_encoder.toml")
    assert list(r.specs) == ["image", "text"]
    assert r.specs["text"].input("prompt").dtype == "int64"
    assert r.specs["image"].output("image_embedding").task == "embedding"
    bad = tmp_path / "bad.toml"
    bad.write_text((EXPORT / "seed_dual_encoder.toml").read_text() + "\n[graph]\nx = 1\n")
    with pytest.raises(EdgemmError, match="unknown table.*graph"):
        dual_bundle.read_recipe(bad)


# --------------------------------------------------------------------------- the pipeline (slow)


def _accuracy(bundle_dir: Path) -> dict:
    return json.loads((bundle_dir / "reports" / "accuracy.json").read_text())


def _int8_rows(acc: dict) -> list[dict]:
    rows = [a for a in acc["artifacts"].values() if a["precision"] == "int8"]
    assert rows, "no int8 artifact"
    return rows


@pytest.fixture(scope="session")
def seed_bundle(tmp_path_factory):
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            out = tmp_path_factory.mktemp(name) / "bundle"
            edgemm.export(EXPORT / f"{name}.toml", output=out, int8=True, targets=["onnxruntime"], threads=1)
            made[name] = out
        return made[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed_text_image", "seed_av_text"])
def test_caption_seeds_export_quantize_and_load(seed_bundle, eval_split, name):
    out = seed_bundle(name)
    acc = _accuracy(out)
    ref = acc["reference"]["metrics"]["digit"]
    assert ref == pytest.approx(shipped(name)["digit_top1"], abs=2e-3)
    for row in _int8_rows(acc):
        assert row["drop"]["digit"] <= 0.01 + 1e-9, row
    with edgemm.load(out, backend="onnxruntime", precision="int8") as rt:
        audio = {"audio": eval_split["audio"][0].astype(np.float32) / 32768, "sample_rate": 8000} if name == "seed_av_text" else {}
        feeds = rt.preprocess(image=eval_split["image"][0], caption=[str(eval_split["caption_text"][0])], **audio)
        np.testing.assert_array_equal(feeds["caption"], eval_split["caption"][:1])  # the bundle's own tokenizer
        assert rt.run(feeds)["digit"].shape == (1, 10)
    assert (out / "assets" / f"{name}.tokenizer.json").is_file()


@pytest.mark.slow
def test_text_image_without_data_ships_its_tokenizer_and_checks_parity_on_sentences(tmp_path):
    """No evaluation or calibration data: parity runs on sentences of the recipe's tokenizer (ids inside the
    vocabulary), and the bundle alone tokenizes a caption (its tokenizer.json copied under assets/)."""
    (tmp_path / "seeds").mkdir()
    tok = EXPORT / "seeds" / "seed_text_image.tokenizer.json"
    (tmp_path / "seeds" / tok.name).write_bytes(tok.read_bytes())
    text = (EXPORT / "seed_text_image.toml").read_text()
    text = text.replace('checkpoint = "../', f'checkpoint = "{ROOT.as_posix()}/')
    text = text.split("[data]")[0] + "[export]" + text.split("[export]")[1]
    recipe = tmp_path / "seed_text_image.toml"
    recipe.write_text(text)
    out = tmp_path / "bundle"
    edgemm.export(recipe, output=out, targets=["onnxruntime"], threads=1)
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["graphs"]["main"]
    assert "valid feeds made by the inputs' modalities" in entry["parity"]["source"]
    vocab = captions.load_tokenizer(tok).get_vocab_size()
    ids = np.load(out / entry["parity"]["path"])["caption"]
    assert ids.max() < vocab and (ids[:, 0] > 1).all()
    assert {i["name"]: i.get("preprocessing", {}).get("tokenizer") for i in entry["inputs"]}["caption"] == \
        "assets/seed_text_image.tokenizer.json"
    (tmp_path / "seeds" / tok.name).unlink()  # the bundle needs nothing beside it
    with edgemm.load(out, backend="onnxruntime") as rt:
        feeds = rt.preprocess(caption=["an odd digit"], image=np.zeros((32, 32, 3), np.uint8))
        assert feeds["caption"].shape == (1, 8) and feeds["caption"][0, 3] == 0 and (feeds["caption"][0, :3] > 1).all()
        assert rt.run(feeds)["digit"].shape == (1, 10)


@pytest.mark.slow
def test_multitask_export_budgets_the_regression_head(seed_bundle):
    out = seed_bundle("seed_multitask")
    acc = _accuracy(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {o["name"]: o.get("task") for o in manifest["outputs"]}["duration"] == "regression"
    ref_mae = acc["reference"]["metrics"]["duration"]
    assert ref_mae == pytest.approx(shipped("seed_multitask")["duration_mae_s"], rel=1e-3)
    for row in _int8_rows(acc):
        assert row["drop"]["digit"] <= 0.01 + 1e-9, row
        assert row["metrics"]["duration"] <= ref_mae * 1.05 + 1e-9, row


@pytest.fixture(scope="session")
def dual_bundle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dual") / "bundle"
    dual_bundle.export(EXPORT / "seed_dual_encoder.toml", out, int8=True, targets=["onnxruntime"], threads=1)
    return out


@pytest.mark.slow
def test_dual_encoder_one_bundle_zero_shot_within_budget(dual_bundle_dir):
    b = Bundle.open(dual_bundle_dir)
    assert b.graphs() == ["image", "text"]
    report = dual_bundle.zero_shot_report(dual_bundle_dir, EXPORT / "seed_dual_encoder.toml", threads=1)
    rows = report["artifacts"]
    assert {"onnxruntime/fp32", "onnxruntime/int8"} <= set(rows)
    assert rows["onnxruntime/fp32"]["top1"] == pytest.approx(report["reference"]["top1"], abs=2e-3)
    assert rows["onnxruntime/fp32"]["top1"] > 0.8
    assert rows["onnxruntime/int8"]["within_budget"], rows


@pytest.mark.slow
def test_dual_encoder_streams_a_video_text_graph_once(dual_bundle_dir, eval_split, tmp_path):
    """A lossless video of evaluation frames: the text graph embeds the prompts once, the image graph runs per
    frame, and each frame's zero-shot digit equals the one computed offline from the same artifacts."""
    cv2 = pytest.importorskip("cv2")
    from edgemm.runtime.stream import Stream

    frames = eval_split["image"][::50]  # 12 frames, every digit
    video = tmp_path / "digits.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 5.0, (64, 64))
    assert w.isOpened(), "OpenCV cannot write FFV1 video"
    for im in frames:
        w.write(cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    w.release()
    rt = edgemm.load(dual_bundle_dir, backend="onnxruntime", precision="fp32")
    text_rt, image_rt = rt.graph("text"), rt.graph("image")
    runs = {"text": 0}
    real_run = text_rt.run

    def counted(feeds):  # the real runner, counted
        runs["text"] += 1
        return real_run(feeds)

    text_rt.run = counted
    prompts = zero_shot.stream_prompts()
    with Stream(rt, graph="image", video=str(video), policy="all", constants={"text": {"prompt": prompts}},
                combine=zero_shot.PromptEnsemble()) as s:
        results = list(s)
    assert runs["text"] == 1 and len(results) == len(frames)
    text_rt.run = real_run
    classes = zero_shot.class_embeddings(lambda ids: text_rt.run({"prompt": ids})["text_embedding"],
                                         captions.load_tokenizer(EXPORT / "seeds" / "seed_dual_encoder.tokenizer.json"))
    pixels = np.concatenate([image_rt.preprocess(image=f)["image"] for f in frames])
    offline = zero_shot.predict(image_rt.run({"image": pixels})["image_embedding"], classes)
    streamed = [int(r.outputs["digit"][0]) for r in results]  # (label, score)
    assert streamed == offline.tolist()
    assert np.mean(np.array(streamed) == eval_split["digit"][::50]) >= 0.75
    rt.close()
