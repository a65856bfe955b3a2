"""The thread count each CPU artifact runs fastest with at batch 1, measured at export and recorded.

A small model at batch 1 can run faster on one thread than on two: a thread pool's fork/join per operator costs
more than the operator, and which artifacts gain differs by backend and precision
(benchmarks/results/threads-*.json, benchmarks/bench_threads_per_artifact.py). Each CPU artifact is timed at the
export's thread count against one thread, interleaved in one process (edgemm.bench.paired); where one thread is faster with 95 % confidence, the
artifact records ``extra["runner"]["threads"] = 1``, which ``edgemm.load`` (and every runner built through
``RunnerOptions.for_artifact``) uses unless the caller gives threads. The measurement itself is kept in
``extra["threads"]``.
"""
from __future__ import annotations

from ..backends.base import RunnerOptions
from ..backends.registry import get_backend
from ..log import step

SECONDS = 3.0  # cap of one artifact's measurement (it stops earlier once the answer is clear)


def _probed(art) -> dict:
    """The options already recorded for it (a static-shape probe), so it is timed as it will run."""
    opts = RunnerOptions.for_artifact(art, get_backend(art.backend).device)
    return {"static_probe": opts.static_probe} if opts.static_probe else {}


def tune_threads(ctx) -> None:
    """Time every CPU artifact of the graph that runs here at the export's threads and at one; record the winner."""
    from ..bench.paired import measure_pair
    from .verify import default_threads

    n = ctx.config.threads or default_threads()  # the count the export's speed checks and verify time at
    if n < 2:
        return
    g = ctx.graph
    feeds = g.spec.example_feeds(batch=1) if g.eval_samples is None else g.eval_samples.take(slice(0, 1)).feeds
    for art in ctx.artifacts():
        backend = get_backend(art.backend)
        if backend.device != "cpu" or backend.reference or not backend.runs(art.format) or not backend.availability().available:
            continue
        path, opts = ctx.path(art.path), _probed(art)
        with step(f"threads for {art.path} ({art.backend} {art.precision}): {n} against 1, batch 1"):
            res = measure_pair(art.backend, g.spec, path, art.precision, path, art.precision, feeds, n, seconds=SECONDS,
                               a_options=opts, b_options={**opts, "threads": 1})
        one = res.verdict == "faster"
        art.extra["threads"] = {"chosen": 1 if one else n, "of": n, "one_over_n": round(res.ratio.value, 4),
                                "interval": [round(res.ratio.low, 4), round(res.ratio.high, 4)],
                                "rounds": res.ratio.rounds, "stable": res.stable}
        if one:
            art.extra.setdefault("runner", {})["threads"] = 1
