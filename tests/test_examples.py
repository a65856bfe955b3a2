"""The example applications run as a user runs them: real subprocesses on the session's avnet bundle with
synthetic (non-live) sources, no camera or microphone. smart_camera posts to a real local HTTP server;
robot_loop's deadline accounting and controller-error attribution are read from its output."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from models.paths import ROOT

EXAMPLES = ROOT / "examples"
FRAMES = 8
VIDEO = f"synthetic:video?fps=10&frames={FRAMES}&size=64x48"  # not live: every frame yields one result
AUDIO = "synthetic:audio?rate=8000&seconds=2"


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def head_labels(avnet_bundle_dir) -> dict[str, list[str]]:
    import edgemm

    rt = edgemm.load(avnet_bundle_dir)
    return {t.name: list(t.labels) for t in rt.outputs if t.labels is not None}


@pytest.fixture
def endpoint():
    """A real HTTP server on 127.0.0.1:<free port> collecting each POST's path and body."""
    received: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server hook's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):  # keep the test's output to the assertions
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_smart_camera_posts_one_json_line_per_result(avnet_bundle_dir, head_labels, endpoint, tmp_path):
    url, received = endpoint
    p = run_example("smart_camera.py", str(avnet_bundle_dir), "--video", VIDEO, "--audio", AUDIO,
                    "--log", str(tmp_path / "events.jsonl"), "--post", f"{url}/results", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert len(received) == FRAMES, p.stderr
    assert f"posted {FRAMES} results" in p.stderr and "0 failed, 0 dropped" in p.stderr
    indices = []
    for path, body in received:
        assert path == "/results"
        text = body.decode("utf-8")
        assert "\n" not in text  # one JSON line per POST
        line = json.loads(text)
        assert {"time", "index", "t_capture", "outputs", "latency_ms", "flags"} <= set(line)
        assert set(line["outputs"]) == set(head_labels)
        for head, top in line["outputs"].items():
            assert isinstance(top["label"], str) and top["label"] in head_labels[head]
            assert 0.0 <= top["score"] <= 1.0
        assert line["latency_ms"] > 0
        indices.append(line["index"])
    assert sorted(indices) == list(range(FRAMES))


def test_smart_camera_counts_failed_posts_and_keeps_running(avnet_bundle_dir, tmp_path):
    with socket.socket() as s:  # a port nobody listens on: every POST is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = run_example("smart_camera.py", str(avnet_bundle_dir), "--video", VIDEO, "--audio", AUDIO,
                    "--log", str(tmp_path / "events.jsonl"), "--post", f"http://127.0.0.1:{port}/results",
                    "--report-every", "3", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    reports = [ln for ln in p.stderr.splitlines() if "POST to" in ln]
    # the first failure, then one line per 3: failures 1, 3 and 6 of 8
    assert [re.search(r"\((\d+) so far", ln).group(1) for ln in reports] == ["1", "3", "6"], p.stderr
    assert f"from {FRAMES} results" in p.stderr
    assert f"posted 0 results to http://127.0.0.1:{port}/results; {FRAMES} failed" in p.stderr
    assert "Traceback" not in p.stderr


def test_smart_camera_refuses_a_post_that_is_not_a_url(avnet_bundle_dir, tmp_path):
    p = run_example("smart_camera.py", str(avnet_bundle_dir), "--video", VIDEO, "--audio", AUDIO,
                    "--post", "127.0.0.1:8000", cwd=tmp_path)
    assert p.returncode == 2
    assert "--post '127.0.0.1:8000' is not an http(s) URL; give one like http://" in p.stderr


CONTROLLER = '''
def control(result, late):
    print(f"ctl {result.index} late={late} digit={result.outputs['digit'][0]}", flush=True)
    return "noop"


def broken(result, late):
    raise ValueError("wheel jammed")
'''


@pytest.mark.parametrize("deadline_ms, missed", [("0", FRAMES), ("60000", 0)])
def test_robot_loop_calls_the_controller_per_result_with_the_deadline(avnet_bundle_dir, head_labels, tmp_path,
                                                                      deadline_ms, missed):
    (tmp_path / "my_robot.py").write_text(CONTROLLER)
    p = run_example("robot_loop.py", str(avnet_bundle_dir), "--video", VIDEO, "--audio", AUDIO,
                    "--deadline-ms", deadline_ms, "--controller", "my_robot.py:control", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    told = re.findall(r"^ctl (\d+) late=(True|False) digit=(\S+)$", p.stdout, re.M)
    assert [int(i) for i, _, _ in told] == list(range(FRAMES))
    assert all(d in head_labels["digit"] for _, _, d in told)
    assert [late == "True" for _, late, _ in told] == [missed == FRAMES] * FRAMES
    assert len(re.findall(r"MISSED deadline", p.stdout)) == missed
    assert f"{FRAMES} results, {missed} missed the {deadline_ms} ms deadline" in p.stderr


def test_robot_loop_reports_a_failing_controller_as_the_users_error(avnet_bundle_dir, tmp_path):
    (tmp_path / "my_robot.py").write_text(CONTROLLER)
    p = run_example("robot_loop.py", str(avnet_bundle_dir), "--video", VIDEO, "--audio", AUDIO,
                    "--controller", "my_robot.py:broken", cwd=tmp_path)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        "robot_loop: error: the controller my_robot.py:broken raised ValueError: wheel jammed; fix it (traceback with -v)"]
    v = run_example("robot_loop.py", str(avnet_bundle_dir), "--video", VIDEO, "--audio", AUDIO,
                    "--controller", "my_robot.py:broken", "-v", cwd=tmp_path)
    assert v.returncode == 1 and "Traceback" in v.stderr and 'raise ValueError("wheel jammed")' in v.stderr


@pytest.mark.parametrize("ref, message", [
    ("my_robot.py:nofn", "--controller 'my_robot.py:nofn': my_robot.py has no function 'nofn'; name one it defines"),
    ("missing.py:control", "--controller 'missing.py:control': no such file missing.py; give an existing .py file"),
    ("control", "--controller 'control' must look like my_robot.py:control or pkg.mod:control"),
])
def test_robot_loop_refuses_a_controller_it_cannot_find(avnet_bundle_dir, tmp_path, ref, message):
    (tmp_path / "my_robot.py").write_text(CONTROLLER)
    p = run_example("robot_loop.py", str(avnet_bundle_dir), "--controller", ref, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1] == f"robot_loop.py: error: {message}"
