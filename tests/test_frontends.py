"""Modality frontends: image (resize, normalisation, channel order), audio (log-mel, padding,
resampling), text (tokenizer) and their dispatch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemm.data.preprocess import preprocess_input
from edgemm.errors import SpecError
from edgemm.frontends.audio import fit_window, log_mel, mel_filterbank, preprocess_audio, resample, to_float_waveform
from edgemm.frontends.image import preprocess_image, resize_bilinear
from edgemm.frontends.text import preprocess_text
from edgemm.iospec import AudioPreprocess, ImagePreprocess, TensorSpec, TextPreprocess



@pytest.fixture
def cv2():
    """OpenCV, for the tests that compare against it (only those skip without it)."""
    return pytest.importorskip("cv2")

IMG = ImagePreprocess()  # avnet's: 64x64, RGB, mean .5, std .25, NCHW
AUD = AudioPreprocess()  # avnet's: 16 kHz, 1.0 s, 64 mels, 98 frames


def _rng_frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------ image


def test_camera_frame_to_model_tensor():
    x = preprocess_image(_rng_frame(720, 1280), IMG)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    assert x.flags.c_contiguous


def test_stack_of_frames():
    frames = np.stack([_rng_frame(48, 80, s) for s in range(3)])
    x = preprocess_image(frames, IMG)
    assert x.shape == (3, 3, 64, 64)
    np.testing.assert_allclose(x[1:2], preprocess_image(frames[1], IMG), rtol=0, atol=1e-6)


@pytest.mark.parametrize("src, dst", [((20, 30), (64, 64)), ((7, 5), (33, 40)), ((64, 64), (200, 128))])
def test_bilinear_upscale_matches_opencv(src, dst, cv2):
    frame = _rng_frame(*src, seed=1).astype(np.float32)
    ours = resize_bilinear(frame, *dst)
    ref = cv2.resize(frame, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)


def test_bilinear_downscale_matches_opencv(cv2):
    frame = _rng_frame(720, 1280, seed=2).astype(np.float32)
    ours = resize_bilinear(frame, 64, 64)
    ref = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)


def test_resize_is_identity_at_model_size():
    frame = _rng_frame(64, 64)
    np.testing.assert_array_equal(resize_bilinear(frame, 64, 64), frame.astype(np.float32))


def test_normalisation_values():
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 0, 128, 255
    x = preprocess_image(frame, IMG)
    np.testing.assert_allclose(x[0, 0], (0 / 255 - 0.5) / 0.25, atol=1e-5)  # -2
    np.testing.assert_allclose(x[0, 1], (128 / 255 - 0.5) / 0.25, atol=1e-5)
    np.testing.assert_allclose(x[0, 2], (255 / 255 - 0.5) / 0.25, atol=1e-5)  # +2
    custom = ImagePreprocess(size=(8, 8), mean=(0.0, 0.0, 0.0), std=(1.0, 0.5, 0.25))
    y = preprocess_image(np.full((8, 8, 3), 255, np.uint8), custom)
    np.testing.assert_allclose(y[0, :, 0, 0], [1.0, 2.0, 4.0], atol=1e-5)


def test_bgr_channel_order():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255  # frames are given as RGB
    cfg = ImagePreprocess(size=(16, 16), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    rgb = preprocess_image(red, cfg)
    bgr = preprocess_image(red, ImagePreprocess(size=(16, 16), channel_order="BGR", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    assert rgb[0, 0].min() == 1.0 and rgb[0, 2].max() == 0.0
    assert bgr[0, 2].min() == 1.0 and bgr[0, 0].max() == 0.0


def test_nhwc_layout():
    frame = _rng_frame(64, 64)
    nchw = preprocess_image(frame, IMG)
    nhwc = preprocess_image(frame, ImagePreprocess(layout="NHWC"))
    assert nhwc.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(nhwc.transpose(0, 3, 1, 2), nchw)


@pytest.mark.parametrize("frame, match", [
    (np.zeros((64, 64), np.uint8), "HxWx3"),
    (np.zeros((64, 64, 4), np.uint8), "HxWx3"),
    (np.zeros((64, 64, 3), np.float32), "uint8"),
])
def test_bad_frames(frame, match):
    with pytest.raises(SpecError, match=match):
        preprocess_image(frame, IMG)


# ------------------------------------------------------------------------------------ audio


def _tone(freq, rate, seconds=1.0, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _band_of(freq_hz, cfg=AUD):
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    bins = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    return int(fb[:, np.argmin(np.abs(bins - freq_hz))].argmax())  # the band whose triangle peaks there


def test_log_mel_shape():
    feats = log_mel(np.zeros(16000, np.float32), AUD)
    assert feats.shape == (64, 98) and feats.dtype == np.float32
    assert log_mel(np.zeros((5, 16000), np.float32), AUD).shape == (5, 64, 98)
    x = preprocess_audio(np.zeros(16000, np.float32), 16000, AUD)
    assert x.shape == (1, 1, 64, 98)


def test_silence_is_the_log_floor():
    np.testing.assert_allclose(log_mel(np.zeros(16000, np.float32), AUD), np.log(AUD.log_floor), rtol=1e-6)


def test_filterbank_shape_and_coverage():
    fb = mel_filterbank(16000, 512, 64, 20.0, 8000.0)
    assert fb.shape == (64, 257)
    assert (fb >= 0).all() and (fb.max(axis=1) > 0).all()


def test_1khz_tone_peaks_in_its_mel_band():
    feats = log_mel(_tone(1000, 16000), AUD)
    peak = int(feats.mean(axis=1).argmax())
    assert abs(peak - _band_of(1000)) <= 1
    assert peak != _band_of(3000)


def test_short_waveform_is_left_padded():
    half = _tone(1000, 16000, seconds=0.5)
    w = fit_window(half, 16000)
    assert w.shape == (16000,)
    np.testing.assert_array_equal(w[:8000], 0)
    np.testing.assert_array_equal(w[8000:], half)
    feats = log_mel(half, AUD)
    assert feats.shape == (64, 98)
    # the first frames see only padding (silence), the last ones see the tone
    np.testing.assert_allclose(feats[:, :40], np.log(AUD.log_floor), rtol=1e-6)
    assert feats[:, -10:].max() > np.log(AUD.log_floor) + 10


def test_long_waveform_keeps_the_last_window():
    long = np.concatenate([_tone(3000, 16000), _tone(1000, 16000)])
    np.testing.assert_allclose(log_mel(long, AUD), log_mel(_tone(1000, 16000), AUD), atol=1e-4)


def test_resample_8k_to_16k_keeps_the_tone():
    tone8 = _tone(1000, 8000)
    up = resample(tone8, 8000, 16000)
    assert up.shape == (16000,) and up.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(up))
    assert abs(np.fft.rfftfreq(16000, 1 / 16000)[spectrum.argmax()] - 1000) < 2
    x = preprocess_audio(tone8, 8000, AUD)
    assert x.shape == (1, 1, 64, 98)
    peak = int(x[0, 0].mean(axis=1).argmax())
    assert abs(peak - _band_of(1000)) <= 1
    direct = preprocess_audio(_tone(1000, 16000), 16000, AUD)
    # away from the window edge the resampled features match the native ones
    np.testing.assert_allclose(x[0, 0, :, 5:-5].mean(), direct[0, 0, :, 5:-5].mean(), rtol=0.05)


def test_int16_pcm_is_scaled():
    pcm = (_tone(1000, 16000) * 32767).astype(np.int16)
    np.testing.assert_allclose(to_float_waveform(pcm), _tone(1000, 16000), atol=1e-4)
    a, b = preprocess_audio(pcm, 16000, AUD), preprocess_audio(_tone(1000, 16000), 16000, AUD)
    loud = b > np.log(AUD.log_floor) + 6  # near the floor the int16 quantisation noise dominates the log
    assert loud.sum() > 500
    np.testing.assert_allclose(a[loud], b[loud], atol=1e-2)
    with pytest.raises(SpecError, match="int16"):
        to_float_waveform(np.zeros(10, np.int32))


def test_bad_audio():
    with pytest.raises(SpecError, match="mono"):
        preprocess_audio(np.zeros((2, 3, 100), np.float32), 16000, AUD)
    with pytest.raises(SpecError, match="positive"):
        resample(np.zeros(100, np.float32), 0, 16000)


# ------------------------------------------------------------------------------------ text


@pytest.fixture
def vocab_dir(tmp_path: Path) -> Path:
    (tmp_path / "vocab.txt").write_text("<pad>\n<unk>\nhello\nworld\nrobot\n", encoding="utf-8")
    return tmp_path


def test_tokenizer_pads_and_unks(vocab_dir):
    cfg = TextPreprocess(max_length=6)
    ids = preprocess_text("Hello robot zebra", cfg, vocab_dir)
    assert ids.dtype == np.int64 and ids.shape == (1, 6)
    assert ids.tolist() == [[2, 4, 1, 0, 0, 0]]


def test_tokenizer_truncates_and_respects_case(vocab_dir):
    ids = preprocess_text("hello world hello world", TextPreprocess(max_length=3), vocab_dir)
    assert ids.tolist() == [[2, 3, 2]]
    ids = preprocess_text("Hello world", TextPreprocess(max_length=3, lowercase=False, pad_id=9, unk_id=7), vocab_dir)
    assert ids.tolist() == [[7, 3, 9]]


def test_tokenizer_errors(vocab_dir, tmp_path):
    with pytest.raises(SpecError, match="str"):
        preprocess_text(42, TextPreprocess(), vocab_dir)
    with pytest.raises(SpecError, match="not found"):
        preprocess_text("hi", TextPreprocess(tokenizer="missing.txt"), tmp_path)


# ------------------------------------------------------------------------------------ dispatch


def test_preprocess_input_dispatch(vocab_dir):
    img = TensorSpec("image", "float32", ("batch", 3, 64, 64), "image", IMG)
    aud = TensorSpec("audio", "float32", ("batch", 1, 64, 98), "audio", AUD)
    txt = TensorSpec("tokens", "int64", ("batch", 4), "text", TextPreprocess(max_length=4))
    assert preprocess_input(img, _rng_frame(720, 1280), base_dir=vocab_dir).shape == (1, 3, 64, 64)
    assert preprocess_input(aud, _tone(1000, 8000), base_dir=vocab_dir, sample_rate=8000).shape == (1, 1, 64, 98)
    assert preprocess_input(txt, np.array(["hello", "robot world"]), base_dir=vocab_dir, batched=True).tolist() == [[2, 0, 0, 0], [4, 3, 0, 0]]
    with pytest.raises(SpecError, match="HxWx3"):
        preprocess_input(img, np.zeros((2, 64, 64, 3), np.uint8), base_dir=vocab_dir)  # a stack where one frame is expected
    with pytest.raises(SpecError, match="mono"):
        preprocess_input(aud, np.zeros((2, 16000), np.float32), base_dir=vocab_dir)
    with pytest.raises(SpecError, match="no pre-processing"):
        preprocess_input(TensorSpec("x", shape=(1,)), np.zeros(1), base_dir=vocab_dir)


def test_runtime_preprocess_gives_real_strides(avnet_bundle_dir, eval_arrays):
    """x[None] has stride 0 on the new axis; PyTorch's conv runs ~10x slower on such views."""
    import edgemm

    rt = edgemm.load(avnet_bundle_dir, backend="onnxruntime")
    feeds = rt.preprocess(image=eval_arrays["image"][0], audio=(eval_arrays["audio"][0], 8000))
    for name, a in feeds.items():
        assert 0 not in a.strides, (name, a.strides)
