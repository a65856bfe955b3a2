"""``edgemm bench --modes stream``: the real ``Stream`` runtime on live-paced sources at 15/30/60 fps.

The parent writes, once per frame rate, a camera-like video file (MJPG, 320x240, the evaluation frames
one per second) and an 8 kHz wav (the evaluation audio, back to back); the worker streams them through
``edgemm.Stream(..., realtime=True, policy="latest")``: each frame and audio block is released at its
media time on the monotonic clock, as a camera and a microphone deliver them, and a frame that finds
the pipeline busy is dropped (the ``latest`` policy). Reported per run: capture-to-result p50/p90/p99,
jitter (RFC 3550 style: mean |difference| of consecutive capture-to-result latencies), dropped frames,
A/V skew (|``sync.skew_ms``|: the audio window's end vs the frame's time) and the stage medians.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FRAME_SIZE = (320, 240)  # width, height: a small camera's frame, resized by the bundle's own pre-processing


def write_media(raw_npz: Path, fps: float, seconds: float, out_dir: Path) -> dict:
    """The video (MJPG .avi at ``fps``) and the wav (the evaluation audio at its own rate) a stream run reads."""
    import cv2
    import soundfile as sf

    from ..errors import EdgemmError

    with np.load(raw_npz, allow_pickle=False) as z:
        names = [k for k in z.files if not k.endswith(".sample_rate")]
        image = next((z[k] for k in names if z[k].ndim == 4 and z[k].shape[-1] == 3), None)
        audio_key = next((k for k in names if z[k].ndim == 2 and f"{k}.sample_rate" in z.files), None)
        if image is None or audio_key is None:
            raise EdgemmError("--modes stream needs evaluation data with camera frames (HxWx3) and audio with its sample rate")
        audio, rate = z[audio_key], int(z[f"{audio_key}.sample_rate"])
    video, wav = out_dir / f"stream-{fps:g}fps.avi", out_dir / f"stream-{fps:g}fps.wav"
    w = cv2.VideoWriter(str(video), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), float(fps), FRAME_SIZE)
    if not w.isOpened():
        raise EdgemmError("--modes stream: OpenCV cannot write an MJPG video here (its FFMPEG backend is missing)")
    frames = [cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2BGR), FRAME_SIZE) for im in image]
    for k in range(max(1, int(round(seconds * fps)))):
        w.write(frames[int(k / fps) % len(frames)])
    w.release()
    n = int(np.ceil(seconds + 1.0))
    sf.write(str(wav), np.concatenate([audio[i % len(audio)] for i in range(n)]).reshape(-1), rate,
             subtype="PCM_16" if audio.dtype == np.int16 else "FLOAT")
    return {"video": str(video), "audio": str(wav)}


def measure_stream(job: dict, bundle, runner, warmup_feeds: dict) -> dict:
    """One stream run (in a bench worker process): every result's capture-to-result latency and the rest."""
    from ..runtime.runtime import Runtime
    from ..runtime.stream import Stream

    art = next(a for a in bundle.artifacts if a.path == job["artifact"] and a.backend == job["backend"])
    for _ in range(job.get("warmup", 10)):
        runner.infer(warmup_feeds, check=False)
    rt = Runtime(bundle, art, runner=runner)
    stream = Stream(rt, video=job["media"]["video"], audio=job["media"]["audio"], realtime=True, policy="latest")
    results = []
    try:
        for r in stream:
            results.append(r)
    finally:
        stream.close()
    st = stream.stats()
    c2r = [r.latency_ms["capture_to_result"] for r in results]
    stages = {}
    for k in ("preprocess", "infer", "postprocess"):
        stages[k] = [r.latency_ms[k] for r in results if k in r.latency_ms]
    return {"latencies_ms": c2r, "stream": {
        "frames": st["frames_captured"], "results": len(results), "dropped_frames": st["dropped_frames"],
        "jitter_diffs_ms": np.abs(np.diff(c2r)).tolist() if len(c2r) > 1 else [],
        "av_skew_abs_ms": [abs(r.sync["skew_ms"]) for r in results if "skew_ms" in r.sync], "stages_ms": stages}}


def summarize(fps: float, seconds: float, parts: list[dict]) -> dict:
    """The ``stream`` object of a run: the rounds' stream runs pooled."""
    pooled = lambda key: np.asarray([x for p in parts for x in p[key]], dtype=np.float64)  # noqa: E731
    pct = lambda a, q: round(float(np.percentile(a, q)), 4) if a.size else None  # noqa: E731
    frames, drops = sum(p["frames"] for p in parts), sum(p["dropped_frames"] for p in parts)
    skew, jitter = pooled("av_skew_abs_ms"), pooled("jitter_diffs_ms")
    stages = {k: pct(np.asarray([x for p in parts for x in p["stages_ms"].get(k, [])]), 50) for k in ("preprocess", "infer", "postprocess")}
    return {"fps": fps, "seconds_per_round": seconds, "frames": frames, "results": sum(p["results"] for p in parts),
            "dropped_frames": drops, "drop_rate": round(drops / frames, 4) if frames else None,
            "jitter_ms": round(float(jitter.mean()), 4) if jitter.size else None,
            "av_skew_ms": {"p50": pct(skew, 50), "p99": pct(skew, 99)}, "stage_p50_ms": stages,
            "policy": "latest", "source": f"MJPG video {FRAME_SIZE[0]}x{FRAME_SIZE[1]} + wav at the data's rate, released live (realtime)"}
