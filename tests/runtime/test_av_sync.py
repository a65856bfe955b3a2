"""AudioRing: windows that end at a frame's time, on controlled clocks (explicit timestamps)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgemm.runtime.sync import BEFORE_START, ENDED, OVERRUN, STALLED, AudioRing

RATE = 1000


def ramp_ring(seconds=3.0, block=50, **kw) -> AudioRing:
    ring = AudioRing(RATE, 4.0, **kw)
    x = np.arange(int(seconds * RATE), dtype=np.float32)
    for k in range(0, len(x), block):
        ring.write(x[k:k + block], k / RATE)  # sample k captured at k / RATE
    return ring


def test_window_ends_exactly_at_the_frame_time():
    ring = ramp_ring()
    w, info = ring.window(2.0, 500)
    np.testing.assert_array_equal(w, np.arange(1500, 2000, dtype=np.float32))
    assert info.flags == [] and info.zero_filled == 0 and abs(info.skew_s) < 1e-9
    w, _ = ring.window(1.2344, 100)  # between samples: the nearest sample boundary
    np.testing.assert_array_equal(w, np.arange(1134, 1234, dtype=np.float32))


def test_before_start_is_zero_filled_and_flagged():
    ring = ramp_ring()
    w, info = ring.window(0.2, 500)
    assert BEFORE_START in info.flags and info.zero_filled == 300
    np.testing.assert_array_equal(w[:300], 0)
    np.testing.assert_array_equal(w[300:], np.arange(0, 200, dtype=np.float32))
    _, info = ring.window(0.2, 564, core=200)  # only the model window (core) decides the flag
    assert BEFORE_START not in info.flags


def test_stalled_and_ended_audio():
    ring = ramp_ring(seconds=1.0)
    w, info = ring.window(1.1, 200, wait_s=0.0)
    assert STALLED in info.flags and info.zero_filled == 100 and info.lag_s == pytest.approx(0.1)
    np.testing.assert_array_equal(w[:100], np.arange(900, 1000, dtype=np.float32))
    ring.end()
    _, info = ring.window(1.1, 200, wait_s=None)  # ended: no waiting forever
    assert ENDED in info.flags


def test_wait_policy_waits_for_late_audio():
    ring = ramp_ring(seconds=1.0)

    def late():
        time.sleep(0.05)
        ring.write(np.arange(1000, 1200, dtype=np.float32), 1.0)

    threading.Thread(target=late).start()
    w, info = ring.window(1.1, 200, wait_s=2.0)
    assert info.flags == [] and info.waited_s >= 0.03
    np.testing.assert_array_equal(w, np.arange(900, 1100, dtype=np.float32))


def test_tolerance_uses_the_newest_audio_and_reports_skew():
    ring = ramp_ring(seconds=1.0, tolerance_s=0.02)
    w, info = ring.window(1.01, 100)
    assert info.flags == [] and info.skew_s == pytest.approx(0.01)
    np.testing.assert_array_equal(w, np.arange(900, 1000, dtype=np.float32))


def test_overwritten_audio_is_flagged():
    ring = AudioRing(RATE, 1.0)
    x = np.arange(3000, dtype=np.float32)
    ring.write(x, 0.0)
    w, info = ring.window(2.5, 600)
    assert OVERRUN in info.flags and info.zero_filled == 100
    np.testing.assert_array_equal(w[100:], np.arange(2000, 2500, dtype=np.float32))


def test_wraparound_copy():
    ring = AudioRing(RATE, 1.0)
    for k in range(0, 2700, 70):
        ring.write(np.arange(k, min(k + 70, 2700), dtype=np.float32), k / RATE)
    w, info = ring.window(2.7, 900)
    assert info.flags == []
    np.testing.assert_array_equal(w, np.arange(1800, 2700, dtype=np.float32))


def test_drift_and_discontinuities_on_a_live_clock():
    # A microphone 100 ppm fast: blocks of 160 samples arrive every 160 / (16000 * 1.0001) s.
    ring = AudioRing(16000, 4.0, live=True)
    t = 100.0
    for _ in range(500):
        ring.write(np.zeros(160, np.float32), t)
        t += 160 / (16000 * 1.0001)
    assert ring.drift_ppm() == pytest.approx(-100, abs=5)
    # the mapping follows the capture clock: the newest sample ends close to the last stamp
    assert ring.end_time() == pytest.approx(t, abs=0.002)
    ring.write(np.zeros(160, np.float32), t + 1.0)  # 1 s of audio lost
    assert ring.discontinuities == 1 and ring.end_time() == pytest.approx(t + 1.0 + 0.01, abs=0.002)


def test_backpressure_holds_a_file_writer_until_readers_release():
    ring = AudioRing(RATE, 1.0, backpressure=True)
    ring.write(np.zeros(1000, np.float32), 0.0)
    done = threading.Event()

    def writer():
        ring.write(np.ones(100, np.float32), 1.0)
        done.set()

    threading.Thread(target=writer, daemon=True).start()
    assert not done.wait(0.2)  # full: would overwrite unread audio
    ring.release_before(200)
    assert done.wait(2.0)
    w, info = ring.window(1.1, 100)
    np.testing.assert_array_equal(w, 1.0)
