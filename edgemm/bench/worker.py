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
    path = bundle.file(bundle.manifest.get("parity_samples", {}).get("path", "data/parity_samples.npz"), "parity samples path")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    n = len(next(iter(data.values())))
    idx = np.arange(batch) % n
    return {k: v[idx] for k, v in data.items()}


def measure(job: dict) -> dict:
    from ..trust import allow_code

    with allow_code(bool(job.get("trust_code"))):  # the parent decided (edgemm.trust); the job says so
        return _measure(job)


def _measure(job: dict) -> dict:
    from ..backends.base import RunnerOptions
    from ..backends.registry import get_backend
    from ..bundle import Bundle
    from ..runtime.runtime import Runtime

    bundle = Bundle.open(job["bundle"], verify_hashes=False)
    opts = RunnerOptions(threads=job["threads"], precision=job["precision"])
    if job["backend"] == "torch" and job.get("factory"):
        from ..trust import resolve_factory

        module = resolve_factory(job["factory"])(**({"checkpoint": job["checkpoint"]} if job.get("checkpoint") else {}))
        runner = get_backend("torch").runner_for_module(module, bundle.spec, opts)
    else:
        runner = get_backend(job["backend"]).create_runner(bundle.file(job["artifact"], "artifact path"), bundle.spec, opts)

    if job["mode"] == "model":
        feeds = _feeds(bundle, job["batch"])

        def call():
            runner.infer(feeds, check=False)
    else:  # end_to_end: raw frame + waveform -> pre-processing -> model -> labels, one sample
        with np.load(job["raw"], allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
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


def main() -> int:
    """Print the measurement; a failure is one line on stderr (the parent quotes the last line)."""
    from ..errors import EdgemmError, one_line

    try:
        print(json.dumps(measure(json.loads(sys.argv[1]))))
    except EdgemmError as exc:
        print(f"edgemm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # keep the traceback for -v in the parent's log, and end with one line
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(one_line(f"{type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
