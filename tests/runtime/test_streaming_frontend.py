"""The incremental audio frontend (edgemm.frontends.native.StreamingLogMel) against the offline
frontend applied to the whole stream resampled once: windows aligned to the hop, the first
window (reaching before the start of the stream) included, at every source rate."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import edgemm
from edgemm.frontends import audio as A
from edgemm.frontends import native
from edgemm.iospec import AudioPreprocess

CFG = AudioPreprocess()  # avnet's: 16 kHz, 1.0 s, n_fft 512, win 400, hop 160, 64 mels


@pytest.fixture(scope="module")
def speech8k(eval_data):
    """20 s of real speech (FSDD evaluation takes, 8 kHz) as float32."""
    return A.to_float_waveform(eval_data["audio"][:20].reshape(-1))


def recording(speech8k, rate):
    return speech8k if rate == 8000 else A.resample(speech8k, 8000, rate)


def offline(stream, rate, end, cfg=CFG, frontend=native.log_mel):
    """The reference: the whole stream resampled once, the window that ends at ``end`` (zeros before 0)."""
    whole = A.resample(stream, rate, cfg.sample_rate)
    whole = np.concatenate([whole, np.zeros(max(0, end - len(whole)), np.float32)])
    return frontend(whole[:max(0, end)], cfg)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_streaming_windows_equal_the_offline_frontend(speech8k, rate):
    x = recording(speech8k, rate)[: 6 * rate]
    fe = native.StreamingLogMel(CFG, rate)
    rng = np.random.default_rng(rate)
    pos, checked, worst, first_checked = 0, 0, 0.0, False
    while pos < len(x):
        n = int(rng.integers(1, rate // 8))  # irregular capture blocks
        fe.push(x[pos:pos + n])
        pos = min(len(x), pos + n)
        end = fe.hop_aligned_end(fe.resampled_index(pos))
        got = fe.window(end)
        assert got.shape == (1, 1, CFG.n_mels, CFG.n_frames) and got.dtype == np.float32
        ref = offline(x, rate, end)
        worst = max(worst, float(np.abs(got[0, 0] - ref).max()))
        first_checked |= end < CFG.n_samples
        checked += 1
    assert first_checked and checked > 40
    assert worst <= 1e-4, worst
    # and against the numpy training frontend, within the C log-mel kernel's tolerance
    end = fe.hop_aligned_end(fe.resampled_index(pos))
    err = np.abs(fe.window(end)[0, 0] - offline(x, rate, end, frontend=A.log_mel))
    assert err.max() < 5e-3 and err.mean() < 1e-4


def test_video_frame_cadence_8k_and_the_first_window(speech8k):
    """30 fps frames over an 8 kHz wav: every frame's window, from the very first (mostly silence before
    the start), equals the offline one."""
    fe, x, fps = native.StreamingLogMel(CFG, 8000), speech8k[:3 * 8000], 30
    fed = 0
    for k in range(0, 3 * fps):
        src_end = int(round(k / fps * 8000))
        fe.push(x[fed:src_end])
        fed = src_end
        end = fe.hop_aligned_end(fe.resampled_index(src_end))
        assert 0 <= fe.resampled_index(src_end) - end < CFG.hop
        np.testing.assert_allclose(fe.window(end)[0, 0], offline(x, 8000, end), atol=1e-4, rtol=0)


def test_window_past_the_audio_pushed_is_the_stream_ending_there(speech8k):
    """Audio that has not arrived (a stalled source) counts as zeros, like the offline frontend on
    the stream so far; the provisional frames are not kept: once the audio is in, the real ones are used."""
    x = speech8k[:2 * 8000]
    fe = native.StreamingLogMel(CFG, 8000)
    fe.push(x[:12000])
    end = 2 * 16000  # 0.5 s past the audio pushed
    np.testing.assert_allclose(fe.window(end)[0, 0], offline(x[:12000], 8000, end), atol=1e-4, rtol=0)
    fe.push(x[12000:])
    np.testing.assert_allclose(fe.window(end)[0, 0], offline(x, 8000, end), atol=1e-4, rtol=0)
    assert not np.allclose(offline(x[:12000], 8000, end), offline(x, 8000, end), atol=1e-2)  # the two differ


def test_frames_wait_for_a_window_but_not_forever(speech8k):
    """push only resamples; the STFT frames are computed in one batch when a window needs them, or by
    push once LAZY_FRAMES complete frames wait (10 s of pushes without a window keep the buffers at
    their first size), with the same windows either way."""
    fe = native.StreamingLogMel(CFG, 8000)
    sizes = {k: v for k, v in fe.state().items() if k.endswith("capacity")}
    before = fe.state()["f_end"]
    fe.push(speech8k[:800])
    assert fe.state()["f_end"] == before  # 0.1 s in, no frame computed yet: no window asked for
    for k in range(1, 100):
        fe.push(speech8k[k * 800:(k + 1) * 800])
        st = fe.state()
        assert (st["y_end"] - CFG.win_length) // CFG.hop + 1 - st["f_end"] < fe.LAZY_FRAMES
    assert {k: v for k, v in fe.state().items() if k.endswith("capacity")} == sizes
    end = fe.hop_aligned_end(fe.resampled_index(80000))
    np.testing.assert_allclose(fe.window(end)[0, 0], offline(speech8k[:80000], 8000, end), atol=1e-4, rtol=0)


def test_old_windows_and_misaligned_ends(speech8k):
    fe = native.StreamingLogMel(CFG, 8000)
    for k in range(100):  # 10 s in 0.1 s blocks: the ring keeps the last ~2 windows of frames
        fe.push(speech8k[k * 800:(k + 1) * 800])
    assert fe.window(fe.hop_aligned_end(160000)) is not None
    assert fe.window(CFG.n_samples) is None  # older than the frames kept: the caller uses the one-shot path
    with pytest.raises(ValueError, match="hop grid"):
        fe.window(fe.hop_aligned_end(160000) + 1)


def test_other_geometry(speech8k):
    cfg = AudioPreprocess(sample_rate=8000, fmax=4000.0, n_fft=256, win_length=200, hop=80, n_mels=40, window_s=0.75)
    x = A.resample(speech8k[:4 * 8000], 8000, 48000)
    fe = native.StreamingLogMel(cfg, 48000)
    for k in range(1, 40):
        fe.push(x[(k - 1) * 3000:k * 3000])
        end = fe.hop_aligned_end(fe.resampled_index(k * 3000))
        np.testing.assert_allclose(fe.window(end)[0, 0], offline(x[:k * 3000], 48000, end, cfg), atol=1e-4, rtol=0)


def test_one_shot_resampling_designs_its_filter_once(monkeypatch):
    """Runtime.preprocess's path: same samples as scipy's resample_poly, without designing the FIR again."""
    import scipy.signal

    x = np.random.default_rng(0).standard_normal(8064).astype(np.float32)
    for rate in (8000, 44100):
        want = scipy.signal.resample_poly(x, *A.resample_factors(rate, 16000)).astype(np.float32)
        np.testing.assert_array_equal(A.resample(x, rate, 16000), want)

    def no_design(*a, **k):
        raise AssertionError("firwin called again")

    monkeypatch.setattr(scipy.signal, "firwin", no_design)
    A.resample(x, 8000, 16000)
    A.preprocess_audio(x, 44100, CFG)


def test_bad_rates_are_one_clear_error():
    from edgemm.errors import EdgemmError

    with pytest.raises(EdgemmError, match="sample rates must be positive"):
        native.StreamingLogMel(CFG, 0)


def test_numpy_fallback_gives_the_same_windows(tmp_path, speech8k):
    np.save(tmp_path / "x.npy", speech8k[:3 * 8000])
    code = (
        "import sys, numpy as np, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from edgemm.frontends import native\n"
        "from edgemm.frontends import audio as A\n"
        "from edgemm.iospec import AudioPreprocess\n"
        "assert not native.available()\n"
        "cfg = AudioPreprocess(); x = np.load(sys.argv[1]); out = {}\n"
        "for rate in (8000, 44100):\n"
        "    s = x if rate == 8000 else A.resample(x, 8000, rate)\n"
        "    fe = native.StreamingLogMel(cfg, rate); step = rate // 30; got = []\n"
        "    for k in range(1, 60):\n"
        "        fe.push(s[(k - 1) * step:k * step])\n"
        "        got.append(fe.window(fe.hop_aligned_end(fe.resampled_index(k * step)))[0, 0])\n"
        "    out[str(rate)] = np.stack(got)\n"
        "np.savez(sys.argv[2], **out)\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
                       env=dict(os.environ, EDGEMM_NATIVE="0"), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    got = np.load(tmp_path / "out.npz")
    x = speech8k[:3 * 8000]
    for rate in (8000, 44100):
        s = x if rate == 8000 else A.resample(x, 8000, rate)
        step = rate // 30
        fe = native.StreamingLogMel(CFG, rate)  # only for the geometry helpers
        for k in (1, 17, 59):
            end = fe.hop_aligned_end(fe.resampled_index(k * step))
            np.testing.assert_allclose(got[str(rate)][k - 1], offline(s, rate, end, frontend=A.log_mel), atol=1e-4, rtol=0)


def test_stream_48k_wav_uses_the_streaming_frontend(avnet_runtime, eval_data, tmp_path, no_stream_threads):
    """A 48 kHz recording streamed with a video: each frame's outputs are the model's outputs on the
    offline features of the same (hop-aligned) window."""
    import cv2

    n, rate = 8, 48000
    wav = A.resample(A.to_float_waveform(eval_data["audio"][:n].reshape(-1)), 8000, rate)
    sf.write(str(tmp_path / "a.wav"), wav, rate, subtype="FLOAT")
    w = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 3.0, (64, 64))
    for i in range(3 * n):
        w.write(cv2.cvtColor(eval_data["image"][i // 3], cv2.COLOR_RGB2BGR))
    w.release()
    res = list(edgemm.Stream(avnet_runtime, video=str(tmp_path / "v.avi"), audio=str(tmp_path / "a.wav")))
    assert len(res) == 3 * n
    fe = native.StreamingLogMel(CFG, rate)
    for r in res[::4]:
        end = fe.hop_aligned_end(fe.resampled_index(int(round(r.t_capture * rate))))
        feeds = {"image": avnet_runtime.preprocess(image=eval_data["image"][r.index // 3])["image"],
                 "audio": offline(wav, rate, end)[None, None]}
        ref = avnet_runtime.run(feeds)
        for h in ref:
            np.testing.assert_allclose(r.raw[h], ref[h], atol=1e-4)
    assert all("preprocess_audio" in r.latency_ms and "preprocess" in r.latency_ms for r in res)
