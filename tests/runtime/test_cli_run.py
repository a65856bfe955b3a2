"""`edgemm run`: results as they come, --json-lines (DESIGN.md keys), one-line errors with exit 2."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from edgemm.cli import main


def test_run_files_prints_and_writes_json_lines(avnet_bundle_dir, eval_av_files, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    rc = main(["run", str(avnet_bundle_dir), "--video", str(eval_av_files["video"]), "--audio", str(eval_av_files["audio"]),
               "--backend", "onnxruntime", "--max-frames", "6", "--json-lines", str(out)])
    assert rc == 0
    printed = capsys.readouterr()
    lines = [ln for ln in printed.out.splitlines() if ln.startswith("t=")]
    assert len(lines) == 6 and "digit" in lines[1] and "latency" in lines[1] and "audio_before_start" in lines[0]
    assert "6 results from 6 frames, dropped 0" in printed.err
    rows = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert len(rows) == 6
    for k, row in enumerate(rows):
        assert row["t_capture"] == k  # media time of frame k (1 fps file)
        assert set(row["outputs"]) == {"digit", "speaker"}
        assert set(row["outputs"]["speaker"]) == {"label", "score"} and 0 <= row["outputs"]["speaker"]["score"] <= 1
        assert {"capture_to_result", "queue", "sync", "preprocess", "infer", "postprocess"} <= set(row["latency_ms"])
        assert row["dropped_frames"] == 0
    assert rows[0]["flags"] == ["audio_before_start"] and rows[1]["flags"] == []


def test_run_errors_are_one_line_exit_2(avnet_bundle_dir, capsys, monkeypatch):
    b = str(avnet_bundle_dir)
    cases = [
        (["--video", "/nonexistent.mp4", "--audio", "synthetic:audio"], "video source '/nonexistent.mp4': no such video file"),
        (["--video", "synthetic:video"], "needs an audio source"),
        (["--video", "synthetic:video", "--audio", "synthetic:audio", "--show"], "--show needs a display"),
    ]
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    for argv, msg in cases:
        assert main(["run", b, *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("edgemm: error: ") and msg in err[0], err


def test_ctrl_c_stops_a_live_run(avnet_bundle_dir, tmp_path):
    out = tmp_path / "live.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "edgemm", "run", str(avnet_bundle_dir), "--backend", "onnxruntime",
                          "--video", "synthetic:video?fps=30&frames=0&live=1&size=320x240",
                          "--audio", "synthetic:audio?live=1&seconds=0", "--json-lines", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         # a shell that starts the tests in the background (`cmd &`) passes SIGINT on ignored,
                         # and Python keeps it so: give the CLI the default disposition a terminal gives it
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 10):
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=20)
    err = p.stderr.read()
    assert rc == 130 and "interrupted" in err and "Traceback" not in err, err
    rows = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert len(rows) >= 10 and all(r["latency_ms"]["capture_to_result"] < 1000 for r in rows)
