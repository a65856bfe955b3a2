"""Streams under real-world timing and faults (issue 12): sparse and variable-frame-rate files, network
cameras that drop, stall or break the protocol, audio that goes silent, and a bounded close().

Real components only: files written here (OpenCV's MJPEG AVI writer, soundfile), MJPEG cameras served on
loopback from a thread, the avnet bundle on ONNX Runtime."""
from __future__ import annotations

import http.server
import socketserver
import struct
import threading
import time

import numpy as np
import pytest

import edgemm
from edgemm.cli import main
from edgemm.errors import EdgemmError
from edgemm.runtime.sources import Frame, ProtocolError, Source, SourceError, open_video


def write_avi(path, images, slots, base_fps: float) -> None:
    """An MJPEG AVI where ``images[i]`` is shown at tick ``slots[i]`` of ``1 / base_fps`` s; the ticks in
    between are empty chunks, which is how AVI stores a variable frame rate (demuxers skip them and
    the next frame keeps its own timestamp)."""
    import cv2

    h, w = images[0].shape[:2]
    tmp = str(path) + ".cfr.avi"
    wr = cv2.VideoWriter(tmp, cv2.CAP_OPENCV_MJPEG, cv2.VideoWriter_fourcc(*"MJPG"), float(base_fps), (w, h))
    assert wr.isOpened()
    wr.write(images[0])
    wr.release()
    data = bytearray(open(tmp, "rb").read())
    movi = data.find(b"LIST", 12)
    while data[movi + 8:movi + 12] != b"movi":
        movi = data.find(b"LIST", movi + 4)
    jpgs = {s: cv2.imencode(".jpg", im)[1].tobytes() for s, im in zip(slots, images)}
    n = max(slots) + 1
    body, idx = bytearray(b"movi"), bytearray()
    for s in range(n):
        jpg = jpgs.get(s, b"")
        idx += b"00dc" + struct.pack("<III", 0x10 if jpg else 0, len(body), len(jpg))
        body += b"00dc" + struct.pack("<I", len(jpg)) + jpg + (b"\0" if len(jpg) & 1 else b"")
    out = data[:movi] + b"LIST" + struct.pack("<I", len(body)) + body + b"idx1" + struct.pack("<I", len(idx)) + idx
    for tag, off in ((b"avih", 16), (b"strh", 32), (b"dmlh", 0)):  # total frames
        p = out.find(tag)
        if p >= 0:
            struct.pack_into("<I", out, p + 8 + off, n)
    struct.pack_into("<I", out, 4, len(out) - 8)
    with open(path, "wb") as f:
        f.write(out)


@pytest.fixture
def digit_frames(eval_data):
    import cv2

    return [cv2.cvtColor(im, cv2.COLOR_RGB2BGR) for im in eval_data["image"][:8]]


# --------------------------------------------------------------------------- files


def test_sparse_file_finishes_in_bounded_time_with_one_result_per_frame(avnet_bundle_dir, digit_frames, tmp_path, capsys,
                                                                       no_stream_threads):
    """The issue's example: one frame every 5 s (0.2 fps, 20 s) + its 20 s wav used to hang for ever (the
    file's audio back-pressure met an unbounded wait: the frame at 5 s needs more audio than the ring holds)."""
    import json

    import cv2
    import soundfile as sf

    video, wav, out = tmp_path / "v.avi", tmp_path / "a.wav", tmp_path / "r.jsonl"
    w = cv2.VideoWriter(str(video), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), 0.2, (64, 64))
    assert w.isOpened(), "OpenCV cannot write a 0.2 fps MJPEG AVI"
    for im in digit_frames[:4]:
        w.write(im)
    w.release()
    rng = np.random.default_rng(0)
    sf.write(str(wav), (0.1 * rng.standard_normal(20 * 8000)).astype(np.float32), 8000, subtype="PCM_16")
    t0 = time.monotonic()
    rc = main(["-q", "run", str(avnet_bundle_dir), "--video", str(video), "--audio", str(wav), "--backend", "onnxruntime",
               "--json-lines", str(out)])
    elapsed = time.monotonic() - t0
    assert rc == 0, capsys.readouterr().err
    rows = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["t_capture"] for r in rows] == [0.0, 5.0, 10.0, 15.0]  # one result per frame, container times
    assert rows[0]["flags"] == ["audio_before_start"]
    assert all(r["flags"] == [] for r in rows[1:])  # real audio ending at each frame, nothing stalled
    assert elapsed < 60, f"took {elapsed:.1f} s"


def test_variable_frame_rate_file_is_stamped_with_container_timestamps(avnet_runtime, digit_frames, tmp_path,
                                                                      no_stream_threads):
    video = tmp_path / "vfr.avi"
    write_avi(video, digit_frames[:5], [0, 1, 7, 8, 20], 10)  # frames at 0, 0.1, 0.7, 0.8, 2.0 s
    with edgemm.Stream(avnet_runtime, video=str(video), audio="synthetic:audio?rate=8000&seconds=3") as s:
        rows = list(s)
    assert [round(r.t_capture, 6) for r in rows] == [0.0, 0.1, 0.7, 0.8, 2.0]  # not count / fps (0, 0.1, 0.2, ...)
    assert all(abs(r.sync["skew_ms"]) < 1.0 for r in rows)  # each audio window ends at its frame's own time


def test_file_stall_wait_is_bounded(avnet_runtime, tmp_path, no_stream_threads):
    """A file source whose audio never reaches the frame time (the audio source blocks) is not waited
    for beyond stall_ms: the frame is zero-filled and flagged, the stream goes on."""

    class StuckAudio(Source):  # a real Source: delivers 0.25 s of audio, then blocks until interrupted
        kind, live = "audio", False
        rate = 8000

        def read(self):
            if self.count == 0:
                self.count += 1
                from edgemm.runtime.sources import AudioBlock

                return AudioBlock(np.zeros(2000, np.float32), 0.0, 8000, self.clock())
            self._closed.wait(30)
            return None

    t0 = time.monotonic()
    with edgemm.Stream(avnet_runtime, video="synthetic:video?fps=2&frames=3&size=64x64", audio=StuckAudio("stuck:"),
                       stall_ms=300) as s:
        rows = list(s)
    assert [r.index for r in rows] == [0, 1, 2]
    assert "audio_stalled" in rows[1].flags and "audio_stalled" in rows[2].flags
    assert time.monotonic() - t0 < 10


# --------------------------------------------------------------------------- network cameras


class _Camera(http.server.BaseHTTPRequestHandler):
    """An MJPEG camera: every connection serves ``per_connection`` frames then cuts it (None: for ever);
    after a cut the camera answers 503 for ``down_s`` seconds; ``stall_after``: stop sending (keep the
    socket open) after that many frames; ``raw``: send these bytes after the headers instead."""

    frames: list[bytes] = []
    fps = 50.0
    per_connection: int | None = None
    down_s = 0.0
    stall_after: int | None = None
    raw: bytes | None = None
    state: dict = {}

    def do_GET(self):  # noqa: N802
        if time.monotonic() < self.state.get("down_until", 0.0):
            self.send_error(503, "camera rebooting")
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            if self.raw is not None:
                self.wfile.write(self.raw)
                self.wfile.flush()
                time.sleep(2)
                return
            i = 0
            while self.per_connection is None or i < self.per_connection:
                if self.stall_after is not None and i >= self.stall_after:
                    time.sleep(60)
                    return
                jpg = self.frames[i % len(self.frames)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n")
                self.wfile.flush()
                i += 1
                time.sleep(1.0 / self.fps)
        except (BrokenPipeError, ConnectionResetError):
            return
        self.state["down_until"] = time.monotonic() + self.down_s
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def camera(digit_frames):
    import cv2

    servers = []

    def start(**kw) -> str:
        frames = [cv2.imencode(".jpg", cv2.resize(im, (160, 120)))[1].tobytes() for im in digit_frames]
        handler = type("Cam", (_Camera,), {"frames": frames, "state": {}, **kw})
        srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/video.mjpg"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_camera_that_drops_is_reconnected_and_the_stream_goes_on(avnet_runtime, camera, no_stream_threads):
    url = camera(per_connection=8, down_s=0.6)
    got = []
    with edgemm.Stream(avnet_runtime, video=url, audio="synthetic:audio?live=1&seconds=0", policy="all") as s:
        for r in s:
            got.append(r)
            if len(got) == 26:
                break
        st = s.stats()["sources"]["video"]
    assert [r.index for r in got] == list(range(26))  # one stream, frames numbered on
    assert all(b.t_capture > a.t_capture for a, b in zip(got, got[1:]))
    back = [r for r in got if "video_reconnected" in r.flags]
    assert [r.index for r in back] == [8, 16, 24]  # the first frame of each new connection, flagged
    assert all(r.sync["video_gap_ms"] >= 500 for r in back)  # the camera was down 0.6 s each time
    assert st["drops"] == 3 and st["reconnects"] == 3 and st["gaps"] == 3
    assert st["reconnect_attempts"] > st["reconnects"]  # the 503s while it was down were attempts too
    assert st["gap_s_max"] >= 0.5 and "cannot connect (camera rebooting)" in st["last_error"]  # the last 503


def test_no_reconnect_ends_with_one_line(avnet_bundle_dir, camera, capsys, no_stream_threads):
    url = camera(per_connection=5)
    rc = main(["run", str(avnet_bundle_dir), "--video", url, "--audio", "synthetic:audio?live=1&seconds=0",
               "--backend", "onnxruntime", "--policy", "all", "--no-reconnect"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1] == f"edgemm: error: video source '{url}': the camera closed the connection after 5 frames; " \
                      "check the camera / network connection"


def test_close_interrupts_a_stalled_camera_and_releases_it(avnet_runtime, camera, no_stream_threads):
    url = camera(stall_after=3)  # the camera keeps the connection open and sends nothing more
    s = edgemm.Stream(avnet_runtime, video=url, audio="synthetic:audio?live=1&seconds=0", source_timeout_s=60, policy="all")
    it = iter(s)
    first = next(it)
    assert first.index == 0
    time.sleep(0.3)  # the capture thread is now blocked in the socket read
    inner = s.video.inner
    t0 = time.monotonic()
    s.close()
    assert time.monotonic() - t0 < 1.5  # the blocked read was interrupted, not waited out (60 s)
    deadline = time.monotonic() + 3
    while inner._resp is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert inner._resp is None  # released


def test_close_is_bounded_and_never_releases_a_source_a_thread_is_inside(avnet_runtime, no_stream_threads):
    """A source whose read cannot be interrupted (OpenCV's grab on RTSP waits out its read timeout):
    close() returns on time and leaves the release to the capture thread once it is out."""
    events = []

    class Uninterruptible(Source):
        kind, live = "video", True

        def __init__(self):
            super().__init__("uninterruptible:")
            self.release = threading.Event()
            self.inside = False

        def read(self):
            if self.count < 2:
                self.count += 1
                now = self.clock()
                return Frame(np.zeros((64, 64, 3), np.uint8), now, self.count - 1, now)
            self.inside = True
            self.release.wait(20)  # ignores interrupt()
            self.inside = False
            return None

        def close(self):
            events.append("close while inside" if self.inside else "close")
            super().close()

    src = Uninterruptible()
    s = edgemm.Stream(avnet_runtime, video=src, audio="synthetic:audio?live=1&seconds=0", close_timeout_s=0.5, policy="all")
    it = iter(s)
    next(it)
    next(it)
    time.sleep(0.2)
    t0 = time.monotonic()
    s.close()
    assert time.monotonic() - t0 < 1.5
    assert events == []  # not released under the thread
    src.release.set()
    deadline = time.monotonic() + 3
    while not events and time.monotonic() < deadline:
        time.sleep(0.02)
    assert events == ["close"]  # released once, by the capture thread on its way out


@pytest.mark.parametrize("raw,limit,match", [
    (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 999999999\r\n\r\n", None, "a part of 999999999 bytes"),
    (b"--frame\r\nX-Junk: " + b"a" * 70000 + b"\r\n\r\n", None, "a line longer than 16384 bytes"),
    (b"--frame\r\n" + b"X-A: b\r\n" * 3000 + b"\r\n", None, "part headers longer than 16384 bytes"),
    (b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + b"\x00" * 9000, 4096, "a part without Content-Length over 4096 bytes"),
    (b"junk\r\n" * 3000, 4096, "no part boundary in"),
])
def test_mjpeg_limits_are_one_line(camera, raw, limit, match):
    url = camera(raw=raw)
    src = open_video(url, max_part_bytes=limit, reconnect=False)
    try:
        with pytest.raises(ProtocolError, match=match) as exc:
            src.read()
    finally:
        src.close()
    assert "\n" not in str(exc.value) and url in str(exc.value)


def test_mjpeg_violation_is_not_retried_by_reconnect(avnet_runtime, camera, no_stream_threads):
    url = camera(raw=b"--frame\r\nContent-Length: 99999999999\r\n\r\n")
    with pytest.raises(ProtocolError, match="a part of 99999999999 bytes") as exc:
        for _ in edgemm.Stream(avnet_runtime, video=url, audio="synthetic:audio?live=1&seconds=0"):
            pass
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------- audio faults


def test_audio_that_goes_silent_is_flagged_and_the_stream_recovers(avnet_runtime, no_stream_threads):
    audio = "synthetic:audio?live=1&seconds=0&rate=16000&block=160&silent_every=1&silent_s=0.6"
    with edgemm.Stream(avnet_runtime, video="synthetic:video?fps=20&frames=0&live=1&size=64x64", audio=audio) as s:
        rows = []
        for r in s:
            rows.append(r)
            if r.t_capture - rows[0].t_capture > 3.2:
                break
        st = s.stats()
    stalled = [r for r in rows if "audio_stalled" in r.flags]
    assert stalled, "frames during the silences were not flagged"
    assert st["audio_discontinuities"] >= 2  # the lost samples re-anchored the audio clock
    tail = [r for r in rows if r.t_capture - rows[0].t_capture > 1.0]
    # after each silence real audio comes back: most frames are clean again
    assert sum(1 for r in tail if not r.flags) >= len(tail) // 3
    assert st["capture_to_result_ms"]["p50"] < 100  # stalls cost at most stall_ms (50 ms live)


def test_bad_stall_ms_is_one_line(avnet_runtime):
    with pytest.raises(EdgemmError, match="stall_ms must be >= 0"):
        edgemm.Stream(avnet_runtime, video="synthetic:video", audio="synthetic:audio", stall_ms=-1)
