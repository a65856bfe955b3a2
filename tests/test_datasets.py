"""Labelled sample sets: raw npz (frames + waveforms) vs model-level npz, and bad files."""
from __future__ import annotations

import numpy as np
import pytest

from edgemm.data.datasets import load_samples
from edgemm.data.preprocess import preprocess_input
from edgemm.errors import SpecError
from edgemm.zoo.avnet import iospec

from models.paths import CALIB_NPZ, EVAL_NPZ

SPEC = iospec()


def test_shipped_eval_split_is_raw_and_labelled(eval_arrays):
    assert eval_arrays["image"].shape == (600, 64, 64, 3) and eval_arrays["image"].dtype == np.uint8
    assert eval_arrays["audio"].shape == (600, 8000) and eval_arrays["audio"].dtype == np.int16
    assert int(eval_arrays["audio.sample_rate"]) == 8000
    assert set(np.unique(eval_arrays["digit"])) == set(range(10))
    assert set(np.unique(eval_arrays["speaker"])) == set(range(6))
    # DESIGN: FSDD takes 40-49 and MNIST images 8000-9999 are the held-out evaluation split
    takes = {int(name.rsplit("_", 1)[1].split(".")[0]) for name in eval_arrays["fsdd_file"]}
    assert takes <= set(range(40, 50))
    assert eval_arrays["mnist_index"].min() >= 8000
    assert len(set(eval_arrays["mnist_index"].tolist())) == 600  # distinct images


def test_calibration_split_is_training_material():
    with np.load(CALIB_NPZ) as z:
        takes = {int(name.rsplit("_", 1)[1].split(".")[0]) for name in z["fsdd_file"]}
        assert takes <= set(range(0, 40))
        assert z["mnist_index"].max() < 8000
        assert len(z["digit"]) == 300


def test_raw_npz_is_preprocessed(tmp_path):
    s = load_samples(EVAL_NPZ, SPEC, limit=8)
    assert len(s) == 8
    assert s.feeds["image"].shape == (8, 3, 64, 64) and s.feeds["image"].dtype == np.float32
    assert s.feeds["audio"].shape == (8, 1, 64, 98) and s.feeds["audio"].dtype == np.float32
    assert s.labels["digit"].dtype == np.int64 and s.labels["digit"].shape == (8,)
    SPEC.check_feeds(s.feeds)
    # the same pre-processing as one sample at a time (the runtime's path), 8 kHz rate honoured
    with np.load(EVAL_NPZ) as z:
        frame, wave = z["image"][3], z["audio"][3]
    one_img = preprocess_input(SPEC.input("image"), frame, base_dir=tmp_path)
    one_aud = preprocess_input(SPEC.input("audio"), wave, base_dir=tmp_path, sample_rate=8000)
    np.testing.assert_allclose(s.feeds["image"][3:4], one_img, atol=1e-6)
    np.testing.assert_allclose(s.feeds["audio"][3:4], one_aud, atol=1e-4)


def test_model_level_npz_is_taken_as_is(tmp_path):
    feeds = SPEC.example_feeds(batch=5, seed=3)
    p = tmp_path / "model_level.npz"
    np.savez(p, **feeds, digit=np.arange(5), speaker=np.zeros(5, np.int64))
    s = load_samples(p, SPEC)
    np.testing.assert_array_equal(s.feeds["image"], feeds["image"])
    np.testing.assert_array_equal(s.feeds["audio"], feeds["audio"])
    assert s.labels["digit"].tolist() == [0, 1, 2, 3, 4]


def test_directory_of_npz_and_unlabelled(tmp_path):
    for i in range(2):
        np.savez(tmp_path / f"part{i}.npz", **SPEC.example_feeds(batch=3, seed=i))
    s = load_samples(tmp_path, SPEC)
    assert len(s) == 6 and s.labels == {}
    assert [b["image"].shape[0] for b in s.batches(4)] == [4, 2]
    assert len(s.take(slice(0, 2))) == 2


def test_a_head_labelled_in_some_files_only_is_an_error(tmp_path):
    np.savez(tmp_path / "a.npz", **SPEC.example_feeds(batch=3, seed=0), digit=np.arange(3), speaker=np.zeros(3, np.int64))
    np.savez(tmp_path / "b.npz", **SPEC.example_feeds(batch=3, seed=1), digit=np.arange(3))  # no speaker labels here
    with pytest.raises(SpecError, match=r"label 'speaker' is in 1 of 2 .npz files"):
        load_samples(tmp_path, SPEC)


def test_misaligned_inputs(tmp_path):
    feeds = SPEC.example_feeds(batch=4)
    feeds["audio"] = feeds["audio"][:3]
    p = tmp_path / "bad.npz"
    np.savez(p, **feeds)
    with pytest.raises(SpecError) as exc:
        load_samples(p, SPEC)
    assert "aligned" in str(exc.value) and "'audio'" in str(exc.value)


def test_missing_input_key(tmp_path):
    p = tmp_path / "noaudio.npz"
    np.savez(p, image=SPEC.example_feeds(batch=2)["image"])
    with pytest.raises(SpecError) as exc:
        load_samples(p, SPEC)
    assert "lacks input(s) audio" in str(exc.value)


def test_wrong_raw_data(tmp_path):
    p = tmp_path / "rgba.npz"
    np.savez(p, image=np.zeros((2, 64, 64, 4), np.uint8), audio=np.zeros((2, 8000), np.int16))
    with pytest.raises(SpecError, match="HxWx3"):
        load_samples(p, SPEC)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_samples(tmp_path / "nope.npz", SPEC)
    with pytest.raises(SpecError, match="not found"):
        load_samples(tmp_path, SPEC)  # an empty directory
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(SpecError, match=r"sample file .*corrupt\.npz is not an \.npz file .*numpy\.savez"):
        load_samples(bad, SPEC)
    bad.write_bytes(b"PK\x03\x04 a zip record, then nothing")
    with pytest.raises(SpecError, match=r"cannot read sample file .*corrupt\.npz as \.npz"):
        load_samples(bad, SPEC)
