"""Streaming benchmark: a live-paced 30 fps camera + microphone (synthetic live sources on the
monotonic clock) through the avnet bundle.

    python benchmarks/bench_stream.py [--bundle DIR] [--seconds 20] [--slow-ms 50] [--size 1280x720]

1. fast model (avnet on ONNX Runtime, ~1 ms): dropped frames and capture-to-result latency vs the
   model's own latency (the bar: no drop, median <= model + 5 ms);
2. a model slower than the frame period (the same model plus --slow-ms per call) with the
   ``latest`` policy: drops, and latency percentiles per time slice (bounded, not growing).
Builds the bundle (edgemm export export/avnet.toml) when --bundle is not given. Writes
benchmarks/results/stream-<date>.json.

Soak with injected faults (``--minutes N``): a 30 fps MJPEG camera on loopback (its own process) that
drops the connection every --drop-every s and is then down (HTTP 503) for 1.5 s, and stalls (socket
open, nothing sent) for 4 s every --stall-every s; a live 16 kHz microphone stand-in that goes silent
for 2 s every --silent-every s. The stream reconnects (source timeout 2 s) and goes on. Reported per
quarter of the run: capture-to-result p50/p90/p99 and the ratio of each quarter's p50 to the first's
(the bar: within 20 %), threads and RSS (no growth), faults seen (reconnects, gaps, stalled frames).
Writes benchmarks/results/stream-soak-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edgemm
from edgemm.frontends import native

ROOT = Path(__file__).resolve().parents[1]


class SlowModel:
    def __init__(self, rt, delay_s):
        self.rt, self.delay_s, self.inputs = rt, delay_s, rt.inputs

    def run(self, feeds):
        t_end = time.perf_counter() + self.delay_s
        out = self.rt.run(feeds)
        while time.perf_counter() < t_end:
            time.sleep(max(0.0, t_end - time.perf_counter()))
        return out

    def labels(self, outputs):
        return self.rt.labels(outputs)


def pct(a, q):
    return round(float(np.percentile(a, q)), 3) if len(a) else None


def one(model, seconds, size, policy=None) -> dict:
    fps = 30
    s = edgemm.Stream(model, video=f"synthetic:video?fps={fps}&frames={int(seconds * fps)}&live=1&size={size}",
                      audio="synthetic:audio?live=1&seconds=0&rate=16000&block=160", policy=policy)
    t0 = time.monotonic()
    res = list(s)
    wall = time.monotonic() - t0
    c2r = np.array([r.latency_ms["capture_to_result"] for r in res])
    infer = np.array([r.latency_ms["infer"] for r in res])
    slices = []
    if len(res):
        t = np.array([r.t_capture for r in res]) - res[0].t_capture
        for k in range(4):
            m = (t >= k * seconds / 4) & (t < (k + 1) * seconds / 4)
            slices.append({"slice": k, "results": int(m.sum()), "p50_ms": pct(c2r[m], 50), "p99_ms": pct(c2r[m], 99),
                           "max_ms": pct(c2r[m], 100)})
    st = s.stats()
    stages = {k: pct([r.latency_ms[k] for r in res], 50) for k in res[0].latency_ms} if res else {}
    return {"frames": st["frames_captured"], "results": len(res), "dropped_frames": st["dropped_frames"],
            "dropped_by_stage": st["dropped_by_stage"], "policy": s.policy, "wall_s": round(wall, 2),
            "capture_to_result_ms": {"p50": pct(c2r, 50), "p90": pct(c2r, 90), "p99": pct(c2r, 99), "max": pct(c2r, 100)},
            "model_ms": {"p50": pct(infer, 50), "p99": pct(infer, 99)},
            "overhead_p50_ms": round(pct(c2r, 50) - pct(infer, 50), 3) if len(res) else None,
            "stage_p50_ms": stages, "time_slices": slices, "audio_lag_ms": st["audio_lag_ms"]}


# ----------------------------------------------------------------------------- soak with injected faults

def _camera_process(port_q, fps: float, drop_every: float, stall_every: float) -> None:
    """A loopback MJPEG camera with faults (runs in its own process)."""
    import http.server
    import socketserver

    import cv2

    with np.load(ROOT / "calibration_data" / "avmnist" / "eval.npz") as z:
        frames = [cv2.imencode(".jpg", cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2BGR), (320, 240)))[1].tobytes()
                  for im in z["image"][:30]]
    state = {"down_until": 0.0, "next_drop": time.monotonic() + drop_every, "next_stall": time.monotonic() + stall_every,
             "drops": 0, "stalls": 0, "refused": 0}

    class Cam(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if time.monotonic() < state["down_until"]:
                state["refused"] += 1
                self.send_error(503, "camera rebooting")
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            i, t_next = 0, time.monotonic()
            try:
                while True:
                    now = time.monotonic()
                    if now >= state["next_drop"]:
                        state["next_drop"] = now + drop_every
                        state["down_until"] = now + 1.5
                        state["drops"] += 1
                        return  # cut the connection
                    if now >= state["next_stall"]:
                        state["next_stall"] = now + stall_every
                        state["stalls"] += 1
                        time.sleep(4.0)  # the socket stays open, nothing comes
                        return
                    jpg = frames[i % len(frames)]
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n")
                    self.wfile.flush()
                    i += 1
                    t_next += 1.0 / fps
                    time.sleep(max(0.0, t_next - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError):
                return

        def log_message(self, *args):
            pass

    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Cam)
    srv.daemon_threads = True
    port_q.put(srv.server_address[1])
    srv.serve_forever()


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def soak(rt, minutes: float, drop_every: float, stall_every: float, silent_every: float) -> dict:
    import multiprocessing as mp
    import os
    import threading

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    cam = ctx.Process(target=_camera_process, args=(q, 30.0, drop_every, stall_every), daemon=True)
    cam.start()
    url = f"http://127.0.0.1:{q.get(timeout=60)}/video.mjpg"
    audio = f"synthetic:audio?live=1&seconds=0&rate=16000&block=160&silent_every={silent_every}&silent_s=2"
    seconds = minutes * 60.0
    rows, samples = [], []
    s = edgemm.Stream(rt, video=url, audio=audio, source_timeout_s=2.0)
    t0 = time.monotonic()
    next_sample = t0
    try:
        for r in s:
            now = time.monotonic()
            rows.append((now - t0, r.latency_ms["capture_to_result"], r.latency_ms["infer"], r.flags,
                         r.latency_ms.get("sync", 0.0), r.latency_ms.get("queue", 0.0) + r.latency_ms.get("infer_queue", 0.0)))
            if now >= next_sample:
                samples.append((now - t0, threading.active_count(), _rss_mb(), len(os.listdir("/proc/self/fd")), os.getloadavg()[0]))
                next_sample = now + 5.0
            if now - t0 >= seconds:
                break
        st = s.stats()
    finally:
        s.close()
        cam.terminate()
        cam.join(5)
    t = np.array([r[0] for r in rows])
    c2r = np.array([r[1] for r in rows])
    infer = np.array([r[2] for r in rows])
    quarters = []
    for k in range(4):
        m = (t >= k * seconds / 4) & (t < (k + 1) * seconds / 4)
        sm = [x for x in samples if k * seconds / 4 <= x[0] < (k + 1) * seconds / 4]
        quarters.append({"quarter": k + 1, "results": int(m.sum()), "p50_ms": pct(c2r[m], 50), "p90_ms": pct(c2r[m], 90),
                         "p99_ms": pct(c2r[m], 99), "model_p50_ms": pct(infer[m], 50),
                         "sync_wait_p50_ms": pct(np.array([r[4] for r in rows])[m], 50),
                         "queues_p50_ms": pct(np.array([r[5] for r in rows])[m], 50),
                         "loadavg_1min_mean": round(float(np.mean([x[4] for x in sm])), 2) if sm else None,
                         "reconnected": sum(1 for r, mm in zip(rows, m) if mm and "video_reconnected" in r[3]),
                         "audio_stalled": sum(1 for r, mm in zip(rows, m) if mm and "audio_stalled" in r[3]),
                         "threads_max": max((x[1] for x in sm), default=None), "rss_mb_max": round(max((x[2] for x in sm), default=0), 1),
                         "fds_max": max((x[3] for x in sm), default=None)})
    base = quarters[0]["p50_ms"]
    for qd in quarters:
        qd["p50_vs_first"] = round(qd["p50_ms"] / base, 3) if base and qd["p50_ms"] else None
    flat = all(qd["p50_vs_first"] is not None and abs(qd["p50_vs_first"] - 1) <= 0.2 for qd in quarters)
    threads_ok = quarters[-1]["threads_max"] <= quarters[0]["threads_max"]
    rss_growth = round(quarters[-1]["rss_mb_max"] - quarters[0]["rss_mb_max"], 1)
    return {"minutes": minutes, "results": len(rows), "faults": {"camera_drop_every_s": drop_every, "camera_down_s": 1.5,
            "camera_stall_every_s": stall_every, "camera_stall_s": 4.0, "audio_silent_every_s": silent_every, "audio_silent_s": 2.0,
            "source_timeout_s": 2.0},
            "capture_to_result_ms": {"p50": pct(c2r, 50), "p90": pct(c2r, 90), "p99": pct(c2r, 99), "max": pct(c2r, 100)},
            "quarters": quarters, "video_source": st["sources"]["video"], "audio_discontinuities": st["audio_discontinuities"],
            "dropped_frames": st["dropped_frames"], "dropped_by_stage": st["dropped_by_stage"],
            "samples": [{"t_s": round(a, 1), "threads": b, "rss_mb": round(c, 1), "fds": d, "loadavg_1min": round(e, 2)}
                        for a, b, c, d, e in samples],
            "verdict": {"p50_within_20pct_of_first_quarter": flat, "threads_not_growing": threads_ok,
                        "rss_growth_mb_last_vs_first_quarter": rss_growth, "rss_not_growing": rss_growth < 20.0,
                        "recovered": quarters[-1]["results"] > 0.5 * quarters[0]["results"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--slow-ms", type=float, default=50.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--only", choices=["fast", "slow"], help="run one of the two parts")
    ap.add_argument("--minutes", type=float, help="soak with injected faults for this long (instead of the two parts)")
    ap.add_argument("--drop-every", type=float, default=40.0, help="soak: the camera cuts the connection every S s")
    ap.add_argument("--stall-every", type=float, default=55.0, help="soak: the camera stalls 4 s every S s")
    ap.add_argument("--silent-every", type=float, default=30.0, help="soak: the audio goes silent 2 s every S s")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    kind = "stream-soak" if args.minutes else "stream"
    args.out = args.out or str(ROOT / "benchmarks" / "results" / f"{kind}-{dt.date.today().isoformat()}.json")
    bundle = args.bundle
    if bundle is None:
        bundle = str(Path(tempfile.mkdtemp()) / "avnet")
        subprocess.run([sys.executable, "-m", "edgemm", "-q", "export", str(ROOT / "export" / "avnet.toml"),
                        "--target", "onnxruntime", "-o", bundle], check=True)
    rt = edgemm.load(bundle, backend=args.backend)
    from edgemm.bench.machine import machine_info

    report = {"date": dt.date.today().isoformat(), "machine": {**machine_info(), "native_kernels": native.available()},
              "threads": "the backend's default (min(4, cores) for onnxruntime)", "batch": 1,
              "video": f"synthetic live 30 fps {args.size}", "audio": "synthetic live 16 kHz, 10 ms blocks",
              "seconds": args.seconds}
    report["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    if args.minutes:
        report.update(video="loopback MJPEG camera, 30 fps 320x240, with drops, 503s and stalls",
                      audio="synthetic live 16 kHz, 10 ms blocks, with silences", seconds=args.minutes * 60)
        report["soak"] = r = soak(rt, args.minutes, args.drop_every, args.stall_every, args.silent_every)
        rt.close()
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        for qd in r["quarters"]:
            print(f"quarter {qd['quarter']}: {qd['results']} results, capture-to-result p50 {qd['p50_ms']} ms "
                  f"({qd['p50_vs_first']}x the first) p99 {qd['p99_ms']} ms; threads {qd['threads_max']}, RSS {qd['rss_mb_max']} MB; "
                  f"reconnected {qd['reconnected']}, audio stalled {qd['audio_stalled']}; model p50 {qd['model_p50_ms']} ms, "
                  f"load average {qd['loadavg_1min_mean']}")
        print(f"video source: {r['video_source']}; verdict: {r['verdict']}")
        print(f"wrote {args.out}")
        return
    if args.only != "slow":
        report["fast_model"] = one(rt, args.seconds, args.size)
    if args.only != "fast":
        report["slow_model_latest"] = {"extra_ms_per_call": args.slow_ms,
                                       **one(SlowModel(rt, args.slow_ms / 1000), args.seconds, args.size, "latest")}
    rt.close()
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for k in ("fast_model", "slow_model_latest"):
        if k not in report:
            continue
        r = report[k]
        print(f"{k}: {r['results']}/{r['frames']} results, dropped {r['dropped_frames']}, capture-to-result "
              f"p50 {r['capture_to_result_ms']['p50']} p90 {r['capture_to_result_ms']['p90']} p99 {r['capture_to_result_ms']['p99']} "
              f"max {r['capture_to_result_ms']['max']} ms; model p50 {r['model_ms']['p50']} ms; "
              f"slices p50 {[s['p50_ms'] for s in r['time_slices']]}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
