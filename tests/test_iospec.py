"""IOSpec / TensorSpec: manifest round trip and feed validation (one-line SpecError)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgemm.errors import EdgemmError, SpecError
from edgemm.iospec import AudioPreprocess, ImagePreprocess, IOSpec, TensorSpec, TextPreprocess
from edgemm.zoo.avnet import iospec as avnet_iospec


def _feeds(batch=2, audio_batch=None):
    return {
        "image": np.zeros((batch, 3, 64, 64), np.float32),
        "audio": np.zeros((audio_batch or batch, 1, 64, 98), np.float32),
    }


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg.strip() == msg and msg  # (one line is checked where it matters: the CLI's stderr, tests/test_trust.py)
    return msg


def test_avnet_spec_matches_design():
    spec = avnet_iospec()
    assert spec.input_names == ["image", "audio"]
    assert spec.output_names == ["digit", "speaker"]
    assert spec.input("image").shape == ("batch", 3, 64, 64)
    assert spec.input("audio").shape == ("batch", 1, 64, 98)
    assert spec.input("audio").dynamic_axes == {0: "batch"}
    assert spec.output("digit").labels == tuple(str(d) for d in range(10))
    assert len(spec.output("speaker").labels) == 6


def test_manifest_round_trip_through_json():
    spec = avnet_iospec()
    data = json.loads(json.dumps(spec.to_manifest()))
    assert IOSpec.from_manifest(data) == spec
    image = data["inputs"][0]
    assert set(image) == {"name", "modality", "dtype", "shape", "preprocessing"}
    assert image["shape"] == ["batch", 3, 64, 64]
    assert image["dtype"] == "float32"
    assert image["preprocessing"]["size"] == [64, 64]
    assert set(data["outputs"][0]) == {"name", "dtype", "shape", "labels"}
    assert data["outputs"][0]["labels"] == [str(d) for d in range(10)]


def test_text_and_tensor_round_trip():
    spec = IOSpec(
        inputs=(
            TensorSpec("tokens", "int64", ("batch", 16), "text", TextPreprocess(max_length=16)),
            TensorSpec("x", "float32", ("batch", "time", 4)),
        ),
        outputs=(TensorSpec("y", "float32", ("batch", 2)),),
    )
    again = IOSpec.from_manifest(json.loads(json.dumps(spec.to_manifest())))
    assert again == spec
    assert again.input("x").dynamic_axes == {0: "batch", 1: "time"}
    assert again.input("x").preprocessing is None


def test_check_feeds_accepts_any_batch_and_returns_input_order():
    spec = avnet_iospec()
    feeds = {"audio": _feeds(3)["audio"], "image": _feeds(3)["image"]}
    out = spec.check_feeds(feeds)
    assert list(out) == ["image", "audio"]
    assert out["image"].shape[0] == 3


def test_wrong_dtype():
    feeds = _feeds()
    feeds["image"] = feeds["image"].astype(np.float64)
    with pytest.raises(SpecError) as exc:
        avnet_iospec().check_feeds(feeds)
    msg = _one_line(exc)
    assert "'image'" in msg and "float64" in msg and "float32" in msg


def test_wrong_shape():
    feeds = _feeds()
    feeds["audio"] = np.zeros((2, 1, 64, 101), np.float32)
    with pytest.raises(SpecError) as exc:
        avnet_iospec().check_feeds(feeds)
    msg = _one_line(exc)
    assert "'audio'" in msg and "[2, 1, 64, 101]" in msg and "98" in msg


def test_wrong_rank():
    feeds = _feeds()
    feeds["image"] = np.zeros((3, 64, 64), np.float32)  # batch axis forgotten
    with pytest.raises(SpecError, match="'image' has shape"):
        avnet_iospec().check_feeds(feeds)


def test_not_an_array():
    feeds = _feeds()
    feeds["image"] = feeds["image"].tolist()
    with pytest.raises(SpecError, match="numpy array"):
        avnet_iospec().check_feeds(feeds)


def test_missing_input():
    feeds = _feeds()
    del feeds["audio"]
    with pytest.raises(SpecError) as exc:
        avnet_iospec().check_feeds(feeds)
    msg = _one_line(exc)
    assert "missing" in msg and "'audio'" in msg


def test_unknown_input_with_hint():
    feeds = _feeds()
    feeds["imgae"] = feeds.pop("image")
    with pytest.raises(SpecError) as exc:
        avnet_iospec().check_feeds(feeds)
    msg = _one_line(exc)
    assert "unknown input 'imgae'" in msg
    assert "did you mean 'image'" in msg


def test_mismatched_batch_axis():
    with pytest.raises(SpecError) as exc:
        avnet_iospec().check_feeds(_feeds(batch=2, audio_batch=3))
    msg = _one_line(exc)
    assert "'batch'" in msg and "2" in msg and "3" in msg


def test_feeds_not_a_dict():
    with pytest.raises(SpecError, match="dict"):
        avnet_iospec().check_feeds([np.zeros(1)])


def test_spec_errors_are_edgemm_errors():
    assert issubclass(SpecError, EdgemmError)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="x", dtype="float33"), "dtype"),
        (dict(name="x", modality="imgae"), "did you mean 'image'"),
        (dict(name="x", shape=(0, 3)), "positive"),
        (dict(name="", shape=(1,)), "name"),
    ],
)
def test_bad_tensor_spec(kwargs, match):
    with pytest.raises(SpecError, match=match):
        TensorSpec(**kwargs)


def test_duplicate_names_and_no_inputs():
    with pytest.raises(SpecError, match="unique"):
        IOSpec(inputs=(TensorSpec("a", shape=(1,)),), outputs=(TensorSpec("a", shape=(1,)),))
    with pytest.raises(SpecError, match="no inputs"):
        IOSpec(inputs=(), outputs=(TensorSpec("y", shape=(1,)),))


def test_from_manifest_rejects_unknown_keys_with_hint():
    data = avnet_iospec().to_manifest()
    data["inputs"][0]["modaliti"] = data["inputs"][0].pop("modality")
    with pytest.raises(SpecError, match="did you mean 'modality'"):
        IOSpec.from_manifest(data)
    data = avnet_iospec().to_manifest()
    data["inputs"][1]["preprocessing"]["n_mel"] = 64
    with pytest.raises(SpecError, match="did you mean 'n_mels'"):
        IOSpec.from_manifest(data)
    with pytest.raises(SpecError, match="malformed"):
        IOSpec.from_manifest({"outputs": []})


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ImagePreprocess(channel_order="RBG"), "channel_order"),
        (lambda: ImagePreprocess(layout="CHW"), "layout"),
        (lambda: AudioPreprocess(win_length=1024, n_fft=512), "win_length"),
        (lambda: AudioPreprocess(sample_rate=8000, fmax=8000.0), "fmax"),
    ],
)
def test_bad_preprocessing(make, match):
    with pytest.raises(SpecError, match=match):
        make()


def test_audio_window_geometry():
    pre = AudioPreprocess()
    assert pre.n_samples == 16000
    assert pre.n_frames == 98


def test_example_feeds_pass_check():
    spec = avnet_iospec()
    feeds = spec.example_feeds(batch=3)
    assert spec.check_feeds(feeds)["audio"].shape == (3, 1, 64, 98)
