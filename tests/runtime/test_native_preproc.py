"""C pre-processing kernels vs the numpy reference frontends (the features the model was trained on)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from edgemm.frontends import native
from edgemm.frontends.audio import log_mel, preprocess_audio, resample, to_float_waveform
from edgemm.frontends.image import preprocess_image
from edgemm.iospec import AudioPreprocess, ImagePreprocess

needs_ext = pytest.mark.skipif(not native.available(), reason=f"C extension not in use: {native.reason()}")


def test_extension_is_built_where_it_can_be():
    have_compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not have_compiler:
        pytest.skip("no C compiler: the numpy fallback is expected here")
    # A compiler without Python headers is exactly how a build silently falls back to numpy: fail, do not skip.
    have_headers = Path(sysconfig.get_paths()["include"], "Python.h").is_file()
    assert have_headers, "a C compiler but no Python.h: the C extension cannot build (apt-get install python3-dev)"
    assert native.available(), native.reason()


@needs_ext
@pytest.mark.parametrize("src", [(720, 1280), (480, 640), (64, 64), (33, 47), (7, 5), (1, 1)])
@pytest.mark.parametrize("size", [(64, 64), (224, 224), (31, 100)])
@pytest.mark.parametrize("order,layout", [("RGB", "NCHW"), ("BGR", "NCHW"), ("RGB", "NHWC"), ("BGR", "NHWC")])
def test_image_kernel_matches_reference(src, size, order, layout):
    rng = np.random.default_rng(src[0] * 7 + size[1])
    frame = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    cfg = ImagePreprocess(size=size, channel_order=order, layout=layout, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    ref = preprocess_image(frame, cfg)
    out = native.preprocess_image(frame, cfg)
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


@needs_ext
def test_image_kernel_writes_the_preallocated_buffer_and_handles_batches(eval_data):
    cfg = ImagePreprocess()
    k = native.ImageKernel(cfg)
    buf = k.new_output()
    got = k(eval_data["image"][3], buf)
    assert got is buf
    np.testing.assert_allclose(buf, preprocess_image(eval_data["image"][3], cfg), atol=1e-4)
    batch = eval_data["image"][:5]
    np.testing.assert_allclose(native.preprocess_image(batch, cfg), preprocess_image(batch, cfg), atol=1e-4)
    # a non-contiguous view (a crop) is accepted
    crop = np.zeros((100, 120, 3), np.uint8)[10:90, 5:110]
    np.testing.assert_allclose(k(crop), preprocess_image(crop, cfg), atol=1e-4)


@needs_ext
def test_log_mel_kernel_matches_reference(eval_data):
    cfg = AudioPreprocess()
    rng = np.random.default_rng(0)
    speech = list(resample(to_float_waveform(eval_data["audio"][:8]), 8000, 16000))  # real speech at 16 kHz
    cases = [rng.standard_normal(16000).astype(np.float32) * 0.1, np.zeros(16000, np.float32),
             rng.standard_normal(5000).astype(np.float32), *speech]
    for x in cases:
        ref, got = log_mel(x, cfg), native.log_mel(x, cfg)
        assert got.shape == ref.shape == (64, 98)
        err = np.abs(got - ref)
        assert err.max() < 5e-3 and err.mean() < 1e-4, (err.max(), err.mean())
    batch = np.stack(speech)
    np.testing.assert_allclose(native.log_mel(batch, cfg), log_mel(batch, cfg), atol=5e-3)


@needs_ext
@pytest.mark.parametrize("cfg", [AudioPreprocess(sample_rate=8000, fmax=4000.0, n_fft=256, win_length=200, hop=80, n_mels=40),
                                 AudioPreprocess(window_s=0.5, n_fft=1024, win_length=1024, hop=256, n_mels=80)])
def test_log_mel_kernel_other_geometries(cfg):
    x = np.random.default_rng(1).standard_normal(cfg.n_samples).astype(np.float32) * 0.2
    err = np.abs(native.log_mel(x, cfg) - log_mel(x, cfg))
    assert err.max() < 5e-3 and err.mean() < 1e-4


def test_runtime_preprocess_gives_the_training_features(avnet_runtime, eval_data):
    """Runtime.preprocess (C when built) vs the training-time numpy frontends, and same predictions."""
    img_cfg, aud_cfg = avnet_runtime.inputs[0].preprocessing, avnet_runtime.inputs[1].preprocessing
    same = 0
    for i in range(40):
        feeds = avnet_runtime.preprocess(image=eval_data["image"][i], audio=(eval_data["audio"][i], 8000))
        ref = {"image": preprocess_image(eval_data["image"][i], img_cfg), "audio": preprocess_audio(eval_data["audio"][i], 8000, aud_cfg)}
        np.testing.assert_allclose(feeds["image"], ref["image"], atol=1e-4)
        np.testing.assert_allclose(feeds["audio"], ref["audio"], atol=5e-3)
        a, b = avnet_runtime.run(feeds), avnet_runtime.run(ref)
        same += all(a[h].argmax() == b[h].argmax() for h in a)
    assert same == 40


def test_numpy_fallback_warns_once_and_matches(tmp_path):
    code = (
        "import warnings, numpy as np\n"
        "from edgemm.frontends import native\n"
        "from edgemm.iospec import ImagePreprocess, AudioPreprocess\n"
        "from edgemm.frontends.image import preprocess_image\n"
        "assert not native.available() and 'EDGEMM_NATIVE=0' in native.reason()\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    f = np.full((48, 40, 3), 7, np.uint8)\n"
        "    a = native.preprocess_image(f, ImagePreprocess())\n"
        "    native.log_mel(np.zeros(16000, np.float32), AudioPreprocess())\n"
        "    native.preprocess_image(f, ImagePreprocess())\n"
        "assert np.array_equal(a, preprocess_image(f, ImagePreprocess()))\n"
        "assert sum(issubclass(x.category, native.NativeFallbackWarning) for x in w) == 1, [str(x.message) for x in w]\n"
    )
    env = dict(os.environ, EDGEMM_NATIVE="0")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "using the numpy pre-processing" in p.stderr  # visible on the log too


def _progress_beside(call) -> list[float]:
    """How far a pure-Python thread gets while ``call()`` runs, relative to an equally long sleep under
    the same load (near 0 if the call held the GIL). A long switch interval keeps the interpreter from
    handing the GIL over on its own in between."""
    import threading
    import time

    count, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    th = threading.Thread(target=spin, daemon=True)
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.2)
    th.start()
    try:
        time.sleep(0.05)
        ratios = []
        for _ in range(3):
            c0, t0 = count[0], time.perf_counter()
            call()
            dt, c1 = time.perf_counter() - t0, count[0]
            c2 = count[0]
            time.sleep(dt)
            ratios.append((c1 - c0) / max(1, count[0] - c2))
    finally:
        stop.set()
        th.join()
        sys.setswitchinterval(old)
    return ratios


@needs_ext
def test_kernels_release_the_gil():
    """Long C calls (a big frame; a big block of audio into the streaming frontend) let Python threads run.
    (Per-frame calls of a few microseconds keep it: taking it back costs more in a busy stream.)"""
    frame = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    kernel = native.ImageKernel(ImagePreprocess(size=(2500, 2500)))
    out = kernel.new_output()
    ratios = _progress_beside(lambda: kernel(frame, out))
    assert max(ratios) > 0.25, ratios
    block = np.random.default_rng(1).standard_normal(20 * 48000).astype(np.float32)  # 20 s at 48 kHz
    fes = iter([native.StreamingLogMel(AudioPreprocess(), 48000) for _ in range(3)])
    ratios = _progress_beside(lambda: next(fes).push(block))
    assert max(ratios) > 0.25, ratios


def test_top_labels_match_runtime_labels(avnet_runtime):
    """Stream's per-frame post-processing gives Runtime.labels' answer (label, and score within float32)."""
    from edgemm.frontends.native import TopLabels

    top = TopLabels(avnet_runtime.outputs)
    rng = np.random.default_rng(0)
    for scale in (0.1, 1.0, 30.0):
        raw = {t.name: (scale * rng.standard_normal((1, len(t.labels)))).astype(np.float32) for t in avnet_runtime.outputs}
        want = {h: v[0] for h, v in avnet_runtime.labels(raw).items()}
        got = top(raw)
        assert set(got) == set(want) == {"digit", "speaker"}
        for h in want:
            assert got[h][0] == want[h][0] and abs(got[h][1] - want[h][1]) < 1e-6


@pytest.mark.parametrize("dtype,zero", [(np.int8, -1), (np.int8, 7), (np.uint8, 128), (np.uint8, 0)])
@pytest.mark.parametrize("scale", [0.0156862754, 0.05, 1.0, 3e-4])
@pytest.mark.parametrize("use_ext", [True, False])
def test_int8_codec_matches_numpy(dtype, zero, scale, use_ext, monkeypatch):
    """The int8 feed/output mapping of a quantized model (LiteRT int8 artifacts): the C kernels and the numpy
    fallback both equal numpy's formula, exact halves (round half to even) and out-of-range values included."""
    if use_ext and not native.available():
        pytest.skip(f"C extension not in use: {native.reason()}")
    if not use_ext:
        monkeypatch.setattr(native, "_ext", None)
    rng = np.random.default_rng(int(scale * 1e4) + zero)
    codec = native.Int8Codec(dtype, scale, zero)
    x = (rng.standard_normal((3, 1000)) * rng.choice([0.1, 1.0, 10.0, 1e4])).astype(np.float32)
    x[0, :200] = ((np.arange(200) - 100) * 0.5 * np.float32(scale)).astype(np.float32)  # ties
    info = np.iinfo(dtype)
    want = np.clip(np.rint(np.multiply(x, np.float32(1.0 / scale), dtype=np.float32)) + zero, info.min, info.max).astype(dtype)
    out = np.empty(x.shape, dtype)
    assert codec.quantize(x, out) is out
    np.testing.assert_array_equal(out, want)
    q = rng.integers(info.min, info.max + 1, (2, 17)).astype(dtype)
    got = codec.dequantize(q)
    assert got.dtype == np.float32 and got.shape == q.shape
    np.testing.assert_array_equal(got, (q.astype(np.float32) - np.float32(zero)) * np.float32(scale))


def test_int8_codec_refuses_what_it_cannot_map():
    with pytest.raises(ValueError, match="int8 or uint8"):
        native.Int8Codec(np.int16, 0.1, 0)
    if native.available():
        with pytest.raises(ValueError, match="float32 values into"):
            native._ext.quantize(np.zeros(4, np.float32), np.empty(3, np.int8), 10.0, 0.0, True)
