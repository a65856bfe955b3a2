"""`edgemm run` on a 30 fps video + an 8 kHz wav: median ``latency_ms.preprocess`` vs median ``latency_ms.infer``
(the issue's bar: <= 0.1x), from the CLI's own --json-lines, as files (the default) and paced live (--realtime);
plus why the per-frame pre-processing costs more inside a stream than in a loop: the same kernels' thread
CPU time with hot caches vs after 32 MB of other memory traffic between frames (what the decoder, the
model and other processes do between two frames).

    python benchmarks/bench_run_preprocess.py BUNDLE_DIR [--seconds 20] [--json F]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgemm.bench.live import write_media
from edgemm.bench.machine import machine_info
from edgemm.frontends import native
from edgemm.iospec import AudioPreprocess, ImagePreprocess

ROOT = Path(__file__).resolve().parents[1]


def run_cli(bundle: str, media: dict, extra: list[str], out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "edgemm", "-q", "run", bundle, "--video", media["video"], "--audio", media["audio"],
                    "--backend", "onnxruntime", "--precision", "fp32", "--json-lines", str(out), *extra], check=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    med = {k: round(float(np.median([r["latency_ms"][k] for r in rows if k in r["latency_ms"]])), 4)
           for k in ("preprocess", "preprocess_audio", "preprocess_image", "infer", "capture_to_result")}
    return {"results": len(rows), "median_ms": med, "preprocess_over_infer": round(med["preprocess"] / med["infer"], 3)}


def cache_probe(frames: int = 200) -> dict:
    """Thread CPU time (us) of one frame's image kernel (320x240 -> 64x64) and audio step (8 kHz, 1/30 s)."""
    kernel = native.ImageKernel(ImagePreprocess(size=(64, 64), mean=(0.5,) * 3, std=(0.25,) * 3))
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3)).astype(np.uint8)
    other = np.ones(32 * 1024 * 1024 // 8)
    fe = native.StreamingLogMel(AudioPreprocess(), 8000)
    x = (np.random.default_rng(1).standard_normal(8000 * 120) * 0.1).astype(np.float32)
    fe.push(x[:16000])
    p, res = 16000, {}
    for _ in range(2):
        for mode in ("hot", "cold"):
            for _ in range(frames):
                f = frame.copy()
                if mode == "cold":
                    other += 1.0
                c0 = time.thread_time()
                kernel(f)
                res.setdefault(f"{mode} image", []).append((time.thread_time() - c0) * 1e6)
                p += 266
                c0 = time.thread_time()
                fe.push(x[p - 266:p])
                fe.window(fe.hop_aligned_end(fe.resampled_index(p)))
                res.setdefault(f"{mode} audio", []).append((time.thread_time() - c0) * 1e6)
    return {k: round(float(np.median(v)), 1) for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        media = write_media(ROOT / "calibration_data" / "avmnist" / "eval.npz", 30.0, args.seconds, Path(tmp))
        result = {"machine": machine_info(), "command": " ".join(["python", *sys.argv]), "video": "MJPG 320x240 at 30 fps",
                  "audio": "8 kHz wav", "threads": "edgemm run default", "batch": 1,
                  "files": run_cli(args.bundle, media, [], Path(tmp) / "a.jsonl"),
                  "realtime": run_cli(args.bundle, media, ["--realtime"], Path(tmp) / "b.jsonl"),
                  "cache_probe_thread_cpu_us": cache_probe()}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
