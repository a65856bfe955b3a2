"""How the OpenVINO runner should serve many threads: one runner shared by 1, 2, 4 and 8 threads.

    edgemm export export/avnet.toml --int8 -o build/avnet
    python benchmarks/bench_runner_threads.py build/avnet [--rounds 3] [--calls 200] [--json F]

Variants of ``OpenVinoRunner`` (the same compiled models, only the way a call gets an infer request differs):
- ``pool``: idle requests in a list, a new one when none is idle (what the runner ships);
- ``lock``: one request per compiled model behind a lock (calls run one at a time);
- ``per_thread``: a request per compiled model and thread (``threading.local``);
- ``async_queue``: ``openvino.AsyncInferQueue`` with 8 jobs; the caller waits on an event set by its callback;
- ``pool_throughput_hint`` / ``lock_throughput_hint``: pool and lock on models compiled with the THROUGHPUT hint
  (several CPU streams) instead of the runner's LATENCY hint: whether concurrent requests run in parallel at all;
- ``onnxruntime``: the ONNX Runtime runner on the bundle's ONNX file of the same precision (its sessions are
  thread-safe as they are), for scale.
Each on the fp32 IR (static-shape path: feeds copied into the request's tensors) and the int8 Q/DQ model (dynamic
path: feeds set as shared tensors), batch 1, each runner on the library's default threads and on 1 thread
(``--runner-threads``). Per variant: single-thread latency
(p50/p90 of ``calls`` calls) and the throughput (calls/s) of N threads making ``calls`` calls each from a barrier,
interleaved over rounds (median of the rounds). Every output is compared with the serial one: ``wrong`` must be 0.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from edgemm.backends.base import RunnerOptions
from edgemm.backends.onnxruntime.backend import OrtRunner
from edgemm.backends.openvino.backend import OpenVinoRunner, _Request
from edgemm.bench.machine import machine_info
from edgemm.bundle import Bundle

THREADS = (1, 2, 4, 8)


class _Locked:
    """One request per compiled model; calls take turns."""

    def __init__(self, compiled, static: bool):
        self.request = _Request(compiled, static)
        self.lock = threading.Lock()

    def acquire(self):
        self.lock.acquire()
        return self.request

    def release(self, request) -> None:
        self.lock.release()


class _PerThread:
    """A request per (compiled model, thread)."""

    def __init__(self, compiled, static: bool):
        self.compiled, self.static = compiled, static
        self.local = threading.local()

    def acquire(self):
        req = getattr(self.local, "request", None)
        if req is None:
            req = self.local.request = _Request(self.compiled, self.static)
        return req

    def release(self, request) -> None:
        pass


class LockRunner(OpenVinoRunner):
    def _slot(self, compiled, static):
        return _Locked(compiled, static)


class PerThreadRunner(OpenVinoRunner):
    def _slot(self, compiled, static):
        return _PerThread(compiled, static)


class _ThroughputHint:
    """The same runner compiled with OpenVINO's THROUGHPUT hint (several streams) instead of LATENCY (one)."""

    @staticmethod
    def _compile_config(options):
        return {**OpenVinoRunner._compile_config(options), "PERFORMANCE_HINT": "THROUGHPUT"}


class PoolThroughputRunner(_ThroughputHint, OpenVinoRunner):
    pass


class LockThroughputRunner(_ThroughputHint, LockRunner):
    pass


class AsyncQueueRunner(OpenVinoRunner):
    """``AsyncInferQueue`` per compiled model: ``start_async`` blocks until a job is idle; the callback copies the
    outputs out of the request before it is reused. ``start_async`` itself is not safe from several threads (two
    callers get the same idle job: "Infer Request is busy", or wrong outputs), so submissions take a lock."""

    JOBS = 8

    def _slot(self, compiled, static):
        queue = self._ov.AsyncInferQueue(compiled, self.JOBS)
        queue.set_callback(self._done)
        queue.submit_lock = threading.Lock()
        return queue

    @staticmethod
    def _done(request, userdata):
        event, box = userdata
        box.append([request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs))])
        event.set()

    def _infer(self, feeds):
        self._check_feeds(feeds)
        queue = self._request_for(feeds)
        event, box = threading.Event(), []
        with queue.submit_lock:
            queue.start_async({i: np.ascontiguousarray(feeds[n]) for i, n in enumerate(self._inputs)}, (event, box))
        event.wait()
        return box[0]


def _artifact(bundle: Bundle, backend: str, precision: str):
    arts = [a for a in bundle.artifacts if a.backend == backend and a.precision == precision]
    if not arts:
        sys.exit(f"bench_runner_threads: {bundle.root} has no {backend} {precision} artifact; "
                 "export with: edgemm export export/avnet.toml --int8 -o DIR")
    return sorted(arts, key=lambda a: (not a.path.endswith(".xml"), a.path))[0]


def _runners(bundle: Bundle, precision: str, threads: int | None) -> tuple[dict, str, str]:
    ov_art = _artifact(bundle, "openvino", precision)
    ort_art = _artifact(bundle, "onnxruntime", precision)
    opts = RunnerOptions(precision=precision, threads=threads)
    ov_path = bundle.root / ov_art.path
    return {"pool": OpenVinoRunner(ov_path, bundle.spec, opts), "lock": LockRunner(ov_path, bundle.spec, opts),
            "per_thread": PerThreadRunner(ov_path, bundle.spec, opts),
            "async_queue": AsyncQueueRunner(ov_path, bundle.spec, opts),
            "pool_throughput_hint": PoolThroughputRunner(ov_path, bundle.spec, opts),
            "lock_throughput_hint": LockThroughputRunner(ov_path, bundle.spec, opts),
            "onnxruntime": OrtRunner(bundle.root / ort_art.path, bundle.spec, opts)}, ov_art.path, ort_art.path


def _latency(runner, feeds, calls: int) -> list[float]:
    out = []
    for i in range(calls):
        t0 = time.perf_counter()
        runner.infer(feeds[i % len(feeds)], check=False)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _throughput(runner, feeds, want, threads: int, calls: int) -> tuple[float, int]:
    barrier = threading.Barrier(threads + 1)
    wrong = [0] * threads

    def work(k: int) -> None:
        barrier.wait()
        for i in range(calls):
            j = (k + i * threads) % len(feeds)
            got = runner.infer(feeds[j], check=False)
            if any(not np.array_equal(got[n], want[j][n]) for n in got):
                wrong[k] += 1

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return threads * calls / (time.perf_counter() - t0), sum(wrong)


def measure(bundle: Bundle, precision: str, threads: int | None, feeds: list, rounds: int, calls: int) -> dict:
    runners, ov_path, ort_path = _runners(bundle, precision, threads)
    want = {name: [r.infer(f) for f in feeds] for name, r in runners.items()}  # serial outputs, one call at a time
    for r in runners.values():  # warm-up: static-shape compiles, thread pools
        _latency(r, feeds, 50)
    lat = {name: [] for name in runners}
    tput = {name: {t: [] for t in THREADS} for name in runners}
    wrong = {name: 0 for name in runners}
    # Interleaved (round, then thread count, then variant): load from other processes falls on every variant alike.
    for _ in range(rounds):
        for name, r in runners.items():
            lat[name] += _latency(r, feeds, calls)
        for t in THREADS:
            for name, r in runners.items():
                calls_s, bad = _throughput(r, feeds, want[name], t, calls)
                tput[name][t].append(calls_s)
                wrong[name] += bad
    rows = {}
    for name, r in runners.items():
        rows[name] = {"p50_ms": round(float(np.median(lat[name])), 4), "p90_ms": round(float(np.percentile(lat[name], 90)), 4),
                      "mean_ms": round(float(np.mean(lat[name])), 4),
                      "throughput": {str(t): round(float(np.median(v)), 1) for t, v in tput[name].items()},
                      "wrong": wrong[name]}
        if name in ("pool", "pool_throughput_hint"):  # how many requests the pool grew to, per compiled model
            rows[name]["requests_made"] = {"x".join(map(str, k[0])): len(s._idle) for k, s in r._requests.items()}
            if r._dynamic is not None:
                rows[name]["requests_made"]["dynamic"] = len(r._dynamic._idle)
        print(f"{precision:5s} threads={threads or 'default'} {name:20s} p50 {rows[name]['p50_ms']:.3f} mean {rows[name]['mean_ms']:.3f} ms"
              "  calls/s " + "  ".join(f"{t}t {rows[name]['throughput'][str(t)]:.0f}" for t in THREADS) + f"  wrong {wrong[name]}",
              flush=True)
        r.close()
    return {"openvino": ov_path, "onnxruntime": ort_path, "runner_threads": threads, "variants": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=200, help="calls per thread per measurement")
    ap.add_argument("--runner-threads", default="0,1", help="each runner's own threads (0: the library's default)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    bundle = Bundle.open(args.bundle)
    feeds = [bundle.spec.example_feeds(batch=1, seed=s) for s in range(16)]
    result = {"machine": machine_info(), "bundle": str(args.bundle), "batch": 1, "calls_per_thread": args.calls,
              "rounds": args.rounds, "threads": list(THREADS), "runs": []}
    for precision in ("fp32", "int8"):
        for threads in (int(x) or None for x in args.runner_threads.split(",")):
            result["runs"].append({"precision": precision,
                                   **measure(bundle, precision, threads, feeds, args.rounds, args.calls)})
    result["loadavg_after"] = machine_info()["loadavg"]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
