"""rt.preprocess reproduces Hugging Face's CLIPProcessor from what the hf_clip family reads into a bundle: token ids
equal (truncation, padding, attention mask) and pixel values within 1e-5 (shortest-edge resize with Pillow's
bicubic or bilinear, centre crop, rescale, mean/std), for frames of many sizes. Built locally, nothing downloaded."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

from edgemm.data.preprocess import preprocess_raw  # noqa: E402
from edgemm.families.folder import ModelFolder  # noqa: E402
from edgemm.families.preprocessing import image_from_processor, text_from_tokenizer  # noqa: E402
from edgemm.iospec import IOSpec, TensorSpec  # noqa: E402
from edgemm.modalities.assets import ship_assets  # noqa: E402

from hf_folder import DIGITS, clip_processor_folder  # noqa: E402

LENGTH, IMAGE = 16, 32


def _specs(folder, bundle):
    mf = ModelFolder.read(folder)
    pre, data = image_from_processor(mf.preprocessor, (IMAGE, IMAGE))
    assert data["exact"] is True, data
    vision = IOSpec((TensorSpec("pixel_values", "float32", ("batch", 3, IMAGE, IMAGE), "image", pre),),
                    (TensorSpec("image_embeds", "float32", ("batch", 8)),))
    tpre, tdata = text_from_tokenizer(mf, LENGTH)
    text = IOSpec((TensorSpec("input_ids", "int64", ("batch", LENGTH), "text", tpre),
                   TensorSpec("attention_mask", "int64", ("batch", LENGTH), "tensor")),
                  (TensorSpec("text_embeds", "float32", ("batch", 8)),))
    # The bundle holds the tokenizer: preprocessing reads nothing from the model folder any more.
    text = ship_assets(text, folder, bundle, "text")
    assert text.input("input_ids").preprocessing.tokenizer == "graphs/text/assets/tokenizer.json"
    return IOSpec.from_manifest(vision.to_manifest()), IOSpec.from_manifest(text.to_manifest())


@pytest.mark.parametrize("resample", [3, 2])
def test_clip_processor_parity(tmp_path, resample):
    folder, bundle = tmp_path / "clip", tmp_path / "bundle"
    proc = clip_processor_folder(folder, IMAGE, resample)
    vision, text = _specs(folder, bundle)
    assert vision.input("pixel_values").preprocessing.resize == {3: "bicubic", 2: "bilinear-pil"}[resample]
    rng = np.random.default_rng(0)
    for h, w in [(48, 64), (64, 48), (32, 32), (31, 97), (480, 640), (20, 25), (33, 32)]:
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        frame[: h // 2] //= 3  # structure, not only noise
        want = proc(images=frame, return_tensors="np")["pixel_values"]
        got = preprocess_raw(vision, {"pixel_values": frame}, base_dir=bundle)["pixel_values"]
        assert got.shape == want.shape == (1, 3, IMAGE, IMAGE)
        assert np.abs(got - want).max() <= 1e-5, (h, w, np.abs(got - want).max())
        bgr = preprocess_raw(vision, {"image": frame[..., ::-1].copy()}, base_dir=bundle, color="bgr")["pixel_values"]
        np.testing.assert_array_equal(bgr, got)
    texts = ["a photo of the digit seven", "Seven", "a handwritten nine, 9 " * 8, "", "zebra!! 42 unknown-words"]
    want = proc(text=texts, padding="max_length", max_length=LENGTH, truncation=True, return_tensors="np")
    got = preprocess_raw(text, {"input_ids": texts}, base_dir=bundle)
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])
    one = preprocess_raw(text, {"text": "a photo of the digit " + DIGITS[3]}, base_dir=bundle)
    np.testing.assert_array_equal(one["input_ids"], proc(text=["a photo of the digit three"], padding="max_length",
                                                         max_length=LENGTH, return_tensors="np")["input_ids"])
