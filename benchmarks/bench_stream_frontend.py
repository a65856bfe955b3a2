"""Audio pre-processing per video frame: the incremental streaming frontend vs the one-shot path.

    python benchmarks/bench_stream_frontend.py [--rounds 7] [--frames 150]

For an 8 kHz and a 16 kHz source at 30 fps (real speech from the evaluation split): per frame,
(a) streaming: push the 1/30 s that arrived + the window that ends at the frame
(``StreamingLogMel``), (b) one-shot with the filter cached (``preprocess_audio``, what
``Runtime.preprocess`` runs now), (c) one-shot as before (``scipy.signal.resample_poly`` designing its
filter on every call). And ``Runtime``-level: the image + 1 s of 8 kHz audio through
``preprocess_input`` before/after. Interleaved rounds, medians + p90/p99. Writes
benchmarks/results/stream-frontend-<date>.json with the CPU flags.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.signal

from edgemm.bench.machine import machine_info
from edgemm.frontends import audio as A
from edgemm.frontends import native
from edgemm.iospec import AudioPreprocess, ImagePreprocess

ROOT = Path(__file__).resolve().parents[1]


def old_preprocess_audio(w, rate, cfg):
    """The pre-change one-shot path: resample_poly designs the FIR on every call."""
    w = A.to_float_waveform(w)
    if rate != cfg.sample_rate:
        w = A.fit_window(w, int(np.ceil(cfg.window_s * rate)) + 64)
        up, down = A.resample_factors(rate, cfg.sample_rate)
        w = scipy.signal.resample_poly(w, up, down, axis=-1).astype(np.float32)
    return native.log_mel(w, cfg)[None, None]


def stats(ts):
    a = np.asarray(ts) * 1e6
    return {"median_us": round(float(np.median(a)), 2), "p90_us": round(float(np.percentile(a, 90)), 2),
            "p99_us": round(float(np.percentile(a, 99)), 2), "calls": int(a.size)}


def per_frame(speech8: np.ndarray, cfg: AudioPreprocess, rounds: int, frames: int, fps: int = 30) -> dict:
    """Audio pre-processing per video frame at ``fps`` from an 8 kHz and a 16 kHz source, interleaved rounds:
    streaming (push the new block + the window that ends at the frame), one-shot with the filter cached
    (``preprocess_audio``, what ``Runtime.preprocess`` runs), one-shot as before (``resample_poly`` designing
    its filter per call); the streaming log-mel's max |difference| from the offline frontend on the whole
    stream resampled once."""
    result = {}
    for rate in (8000, 16000):
        x = speech8 if rate == 8000 else A.resample(speech8, 8000, rate)
        step = rate // fps
        times = {"streaming": [], "one_shot_cached_filter": [], "one_shot_before": []}
        pos = 2 * rate
        fe = native.StreamingLogMel(cfg, rate)
        fe.push(x[:pos])
        worst = 0.0
        for r in range(rounds):
            for name in times:
                p = pos
                for k in range(frames):
                    p += step
                    if name == "streaming":
                        t0 = time.perf_counter()
                        fe.push(x[p - step:p])
                        out = fe.window(fe.hop_aligned_end(fe.resampled_index(p)))
                        times[name].append(time.perf_counter() - t0)
                    else:
                        w = x[p - rate - 64:p]
                        t0 = time.perf_counter()
                        (A.preprocess_audio(w, rate, cfg, frontend=native.log_mel) if name == "one_shot_cached_filter"
                         else old_preprocess_audio(w, rate, cfg))
                        times[name].append(time.perf_counter() - t0)
                if name == "streaming":
                    e = fe.hop_aligned_end(fe.resampled_index(p))
                    worst = max(worst, float(np.abs(out[0, 0] - native.log_mel(A.resample(x[:p], rate, 16000)[:e], cfg)).max()))
            pos = p
        res = {k: stats(v) for k, v in times.items()}
        res["speedup_streaming_vs_one_shot_cached"] = round(res["one_shot_cached_filter"]["median_us"] / res["streaming"]["median_us"], 2)
        res["speedup_streaming_vs_before"] = round(res["one_shot_before"]["median_us"] / res["streaming"]["median_us"], 2)
        res["max_abs_diff_vs_offline_whole_stream"] = worst
        result[f"{rate}Hz"] = res
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / f"stream-frontend-{dt.date.today().isoformat()}.json"))
    args = ap.parse_args()
    cfg, icfg = AudioPreprocess(), ImagePreprocess(size=(64, 64), mean=(0.5,) * 3, std=(0.25,) * 3)
    with np.load(ROOT / "calibration_data" / "avmnist" / "eval.npz") as z:
        speech8 = A.to_float_waveform(z["audio"][:40].reshape(-1))
        frame = z["image"][0]
    report = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": {**machine_info(), "native_kernels": native.available()}, "threads": 1, "batch": 1,
              "command": " ".join(["python", "benchmarks/bench_stream_frontend.py", *sys.argv[1:]]), "fps": 30, "per_frame": {}}
    report["per_frame"] = per_frame(speech8, cfg, args.rounds, args.frames)
    # Runtime.preprocess-level: image + (1 s at 8 kHz, 8000), before/after the filter cache
    from edgemm.data.preprocess import preprocess_input
    from edgemm.recipe import load_recipe

    spec = load_recipe(ROOT / "export" / "avnet.toml").spec
    wav = (speech8[:8000] * 32767).astype(np.int16)
    t_img, t_aud = spec.inputs
    rt_times = {"after": [], "before": []}
    orig = A.resample
    for r in range(args.rounds):
        for name in rt_times:
            A.resample = orig if name == "after" else (lambda w, a, b: scipy.signal.resample_poly(w, *A.resample_factors(a, b), axis=-1).astype(np.float32))
            for _ in range(100):
                t0 = time.perf_counter()
                preprocess_input(t_img, frame, base_dir=ROOT)
                preprocess_input(t_aud, wav, base_dir=ROOT, sample_rate=8000)
                rt_times[name].append(time.perf_counter() - t0)
    A.resample = orig
    report["runtime_preprocess_image_plus_1s_8k"] = {k: stats(v) for k, v in rt_times.items()}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
