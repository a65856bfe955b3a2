"""One benchmark measurement in a fresh process (clean thread pools, honest peak RSS).

    python -m edgemm.bench.worker '{"bundle": ..., "artifact": ..., "backend": ..., "batch": 1, ...}'

Prints one JSON object: latencies (ms) of every timed call and the process's peak RSS.
"""
from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np


def _feeds(bundle, batch: int):
    """``batch`` held-out samples (the bundle's parity samples, repeated if needed)."""
    path = bundle.root / bundle.manifest.get("parity_samples", {}).get("path", "data/parity_samples.npz")
    data = dict(np.load(path))
    n = len(next(iter(data.values())))
    idx = np.arange(batch) % n
    return {k: v[idx] for k, v in data.items()}


def measure(job: dict) -> dict:
    from ..backends.base import RunnerOptions
    from ..backends.registry import get_backend
    from ..bundle import Bundle
    from ..runtime.runtime import Runtime

    bundle = Bundle.open(job["bundle"], verify_hashes=False)
    opts = RunnerOptions(threads=job["threads"], precision=job["precision"])
    if job["backend"] == "torch" and job.get("factory"):
        from ..recipe import import_callable

        module = import_callable(job["factory"])(**({"checkpoint": job["checkpoint"]} if job.get("checkpoint") else {}))
        runner = get_backend("torch").runner_for_module(module, bundle.spec, opts)
    else:
        runner = get_backend(job["backend"]).create_runner(bundle.root / job["artifact"], bundle.spec, opts)

    if job["mode"] == "model":
        feeds = _feeds(bundle, job["batch"])

        def call():
            runner.infer(feeds, check=False)
    else:  # end_to_end: raw frame + waveform -> pre-processing -> model -> labels, one sample
        raw = dict(np.load(job["raw"]))
        art = next(a for a in bundle.artifacts if a.path == job["artifact"] and a.backend == job["backend"])
        rt = Runtime(bundle, art, runner=runner)
        names = [t.name for t in bundle.spec.inputs]
        rates = {n: int(raw[f"{n}.sample_rate"]) for n in names if f"{n}.sample_rate" in raw}
        count = len(raw[names[0]])
        state = {"i": 0}

        def call():
            i = state["i"] % count
            state["i"] += 1
            kwargs = {n: ((raw[n][i], rates[n]) if n in rates else raw[n][i]) for n in names}
            rt.labels(rt._runner.infer(rt.preprocess(**kwargs), check=False))

    for _ in range(job.get("warmup", 10)):
        call()
    times = []
    start = time.perf_counter()
    while len(times) < job.get("min_iters", 30) or time.perf_counter() - start < job["seconds"]:
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= job.get("max_iters", 5000):
            break
    return {"latencies_ms": times, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's own peak RSS. ``ru_maxrss`` is inherited across fork+exec on Linux (a child would
    report its parent's peak), so read VmHWM, which starts afresh with the exec'd image."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
