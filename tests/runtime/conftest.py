"""Fixtures for the streaming runtime tests: the avnet Runtime, an evaluation video + wav with known
labels, and an MJPEG-over-HTTP camera served on loopback from a thread."""
from __future__ import annotations

import http.server
import socketserver
import threading
import time
from pathlib import Path

import numpy as np
import pytest

EVAL_NPZ = Path(__file__).resolve().parents[2] / "calibration_data" / "avmnist" / "eval.npz"


@pytest.fixture(scope="session")
def avnet_runtime(avnet_bundle_dir):
    import edgemm

    rt = edgemm.load(avnet_bundle_dir, backend="onnxruntime")
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def eval_data():
    with np.load(EVAL_NPZ) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def eval_av_files(tmp_path_factory, eval_data):
    """eval.avi (lossless FFV1, 1 fps): frame 0 is a black lead-in, frame k >= 1 shows evaluation
    sample k-1; eval.wav (8 kHz int16): second [k-1, k) is sample k-1's 1.0 s of audio, so the
    1.0 s window that ends at frame k's time (k s) is exactly sample k-1's audio."""
    import cv2
    import soundfile as sf

    d = tmp_path_factory.mktemp("av")
    video, wav = d / "eval.avi", d / "eval.wav"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 1.0, (64, 64))
    assert w.isOpened(), "OpenCV cannot write FFV1 video"
    w.write(np.zeros((64, 64, 3), np.uint8))
    for im in eval_data["image"]:
        w.write(cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    w.release()
    sf.write(str(wav), eval_data["audio"].reshape(-1), int(eval_data["audio.sample_rate"]), subtype="PCM_16")
    return {"video": video, "audio": wav, "n": len(eval_data["image"]), "rate": int(eval_data["audio.sample_rate"])}


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    frames: list[bytes] = []
    fps = 30.0
    die_after: int | None = None  # frames; then the connection is cut (a camera that dies)

    def do_GET(self):  # noqa: N802 - http.server API
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        i = 0
        try:
            while self.die_after is None or i < self.die_after:
                jpg = self.frames[i % len(self.frames)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg))
                self.wfile.write(jpg + b"\r\n")
                self.wfile.flush()
                i += 1
                time.sleep(1.0 / self.fps)
        except (BrokenPipeError, ConnectionResetError):
            return
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def mjpeg_camera(eval_data):
    """Factory: ``url = mjpeg_camera(die_after=None, fps=30)`` serves evaluation frames (upscaled to
    320x240 JPEGs) as an IP camera would, on 127.0.0.1, from a thread."""
    import cv2

    servers = []

    def start(die_after: int | None = None, fps: float = 30.0) -> str:
        frames = [cv2.imencode(".jpg", cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2BGR), (320, 240)))[1].tobytes()
                  for im in eval_data["image"][:10]]
        handler = type("H", (_MjpegHandler,), {"frames": frames, "fps": fps, "die_after": die_after})
        srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/video.mjpg"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def no_stream_threads():
    """Asserts that every edgemm pipeline thread has ended when the test is over."""
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [t.name for t in threading.enumerate() if t.name.startswith("edgemm-")]
        if not left:
            return
        time.sleep(0.05)
    raise AssertionError(f"pipeline threads still running: {left}")
