"""Pre-processing benchmark: the C kernels vs the best library compositions, at equal output.

    python benchmarks/bench_preprocess.py [--rounds 7] [--iters 200]

Image: a 1280x720 RGB frame -> 1x3x64x64 and 1x3x224x224 float32 (bilinear, (x/255 - mean)/std,
NCHW) by the C kernel (preallocated output), cv2.dnn.blobFromImage, cv2.resize + cvtColor + numpy,
and the numpy reference. Log-mel: 1.0 s at 16 kHz -> 64x98 by the C kernel vs the numpy reference.
Audio per video frame at 30 fps from an 8 kHz and a 16 kHz source (``per_frame`` of
bench_stream_frontend.py): the streaming path (``StreamingLogMel``: the new block + the window that ends
at the frame) vs the one-shot path with the filter cached (``preprocess_audio``, what
``Runtime.preprocess`` runs), with the streaming log-mel's max |difference| from the offline frontend on
the whole stream; ``audio_per_frame_30fps.done`` checks >= 5x and <= 1e-4 at both rates.
Methods run interleaved in rounds (the machine is noisy); per-call times are pooled into median /
p90 / p99. Writes benchmarks/results/preprocess-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from bench_stream_frontend import per_frame  # this folder (benchmarks/) is the script's own path entry
from edgemm.bench.machine import machine_info
from edgemm.frontends import native
from edgemm.frontends.audio import log_mel, to_float_waveform
from edgemm.frontends.image import preprocess_image
from edgemm.iospec import AudioPreprocess, ImagePreprocess


def machine() -> dict:
    return {**machine_info(), "opencv": cv2.__version__, "native_kernels": native.available(), "cv2_threads": cv2.getNumThreads()}


def run(methods: dict, rounds: int, iters: dict) -> dict:
    times = {k: [] for k in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            for _ in range(iters[name]):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        a = np.asarray(ts) * 1e6
        out[name] = {"median_us": round(float(np.median(a)), 2), "p90_us": round(float(np.percentile(a, 90)), 2),
                     "p99_us": round(float(np.percentile(a, 99)), 2), "calls": len(a)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--frames", type=int, default=150, help="video frames per round for the audio-per-frame measurement")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / f"preprocess-{dt.date.today().isoformat()}.json"))
    args = ap.parse_args()
    if not native.available():
        print(f"WARNING: the C kernels are not in use ({native.reason()}); 'c_kernel' below is the numpy fallback")
    rng = np.random.default_rng(0)
    # A camera-like frame (smooth gradients + noise), RGB.
    yy, xx = np.mgrid[0:720, 0:1280]
    frame = np.stack([(xx / 5) % 256, (yy / 3) % 256, ((xx + yy) / 7) % 256], -1)
    frame = np.clip(frame + rng.normal(0, 8, frame.shape), 0, 255).astype(np.uint8)
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    report = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "command": " ".join(["python", "benchmarks/bench_preprocess.py", *sys.argv[1:]]), "image": {}, "log_mel": {}}

    for size in (64, 224):
        cfg = ImagePreprocess(size=(size, size))  # avnet's: mean 0.5, std 0.25 (one std: blobFromImage can do it)
        kernel = native.ImageKernel(cfg)
        buf = kernel.new_output()
        mean255, scale = 0.5 * 255.0, 1.0 / (0.25 * 255.0)
        mean_arr, inv = np.float32(mean255), np.float32(scale)

        def c_kernel():
            kernel(frame, buf)

        def blob():  # OpenCV's one-call composition (frame given as the camera delivers it: BGR; swapRB -> RGB)
            return cv2.dnn.blobFromImage(bgr, scale, (size, size), (mean255,) * 3, swapRB=True, crop=False)

        def cv2_numpy():
            x = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
            return np.ascontiguousarray(((x.astype(np.float32) - mean_arr) * inv).transpose(2, 0, 1)[None])

        def reference():
            return preprocess_image(frame, cfg)

        ref = reference()
        c_kernel()
        diffs = {"c_kernel": float(np.abs(buf - ref).max()), "cv2_blobFromImage": float(np.abs(blob() - ref).max()),
                 "cv2_resize_numpy": float(np.abs(cv2_numpy() - ref).max()), "numpy_reference": 0.0}
        methods = {"c_kernel": c_kernel, "cv2_blobFromImage": blob, "cv2_resize_numpy": cv2_numpy, "numpy_reference": reference}
        iters = {k: args.iters for k in methods}
        iters["numpy_reference"] = max(5, args.iters // 20)
        res = run(methods, args.rounds, iters)
        for k in res:
            res[k]["max_abs_diff_vs_reference"] = diffs[k]
        c = res["c_kernel"]["median_us"]
        res["speedup_vs_blobFromImage"] = round(res["cv2_blobFromImage"]["median_us"] / c, 2)
        res["speedup_vs_cv2_resize_numpy"] = round(res["cv2_resize_numpy"]["median_us"] / c, 2)
        res["speedup_vs_numpy_reference"] = round(res["numpy_reference"]["median_us"] / c, 2)
        report["image"][f"1280x720_to_{size}x{size}"] = res

    acfg = AudioPreprocess()
    wave = (0.1 * rng.standard_normal(acfg.n_samples)).astype(np.float32)
    mk = native.LogMelKernel(acfg)
    mbuf = mk.new_output()
    ref = log_mel(wave, acfg)
    mk(wave, mbuf)
    methods = {"c_kernel": lambda: mk(wave, mbuf), "numpy_reference": lambda: log_mel(wave, acfg)}
    res = run(methods, args.rounds, {"c_kernel": args.iters, "numpy_reference": args.iters // 2})
    res["c_kernel"]["max_abs_diff_vs_reference"] = float(np.abs(mbuf[0, 0] - ref).max())
    res["speedup_vs_numpy_reference"] = round(res["numpy_reference"]["median_us"] / res["c_kernel"]["median_us"], 2)
    report["log_mel"]["16k_1s_to_64x98"] = res

    with np.load(Path(__file__).resolve().parents[1] / "calibration_data" / "avmnist" / "eval.npz") as z:
        speech8 = to_float_waveform(z["audio"][:40].reshape(-1))  # real speech, 8 kHz
    pf = per_frame(speech8, acfg, args.rounds, args.frames)
    pf["done"] = all(v["speedup_streaming_vs_one_shot_cached"] >= 5 and v["max_abs_diff_vs_offline_whole_stream"] <= 1e-4
                     for v in pf.values())
    report["audio_per_frame_30fps"] = pf
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for name, r in {**report["image"], **report["log_mel"], **{k: v for k, v in pf.items() if k != "done"}}.items():
        print(name)
        for k, v in r.items():
            if isinstance(v, dict):
                print(f"  {k:<22} median {v['median_us']:9.1f} us  p90 {v['p90_us']:9.1f}  p99 {v['p99_us']:9.1f}"
                      f"  max|diff| {v.get('max_abs_diff_vs_reference', 0):.2e}")
            else:
                print(f"  {k:<36} {v}")
    print(f"audio per frame at 30 fps, streaming >= 5x cheaper and parity <= 1e-4 at 8 and 16 kHz: {pf['done']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
