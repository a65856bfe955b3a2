"""``edgemm.benchmark``: latency / throughput / memory / size / accuracy per artifact x backend x batch.

Every measurement runs in a fresh worker process (``edgemm.bench.worker``): no thread pool or
allocator state leaks from one backend into the next, and peak RSS is per artifact. Rounds are
interleaved (A B C, A B C, ...) and pooled because this kind of machine drifts by ±25 % between
rounds. The baseline is the user's original model in PyTorch eager fp32 under no_grad, rebuilt
from the recipe's factory + checkpoint when the bundle records them (else the torch.export
program of it), measured in the same run; every other run carries its speedup over it.

A bundle is data (edgemm/trust.py): the factory is used only when it is an edgemm zoo factory or the
user opted in (``--trust-code``); the torch.export program (unpickled) only with opt-in. Otherwise the
torch baseline is skipped and the result says why (``baseline_note``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backends.registry import get_backend, reference_backend
from ..bundle import Bundle
from ..data.datasets import SAMPLE_FIX, SAMPLE_KINDS
from ..errors import EdgemmError, SpecError
from ..log import logger
from ..safeio import read_npz
from . import stats
from .machine import machine_info

MODES = ("model", "end_to_end", "stream", "throughput")
DEFAULT_MODES = ("model", "end_to_end")


@dataclass(frozen=True)
class BenchConfig:
    backends: tuple[str, ...] | None = None  # None: every backend that has an artifact and is available
    precisions: tuple[str, ...] | None = None
    batches: tuple[int, ...] = (1, 8)
    threads: int | None = None  # None: min(4, cores)
    modes: tuple[str, ...] = DEFAULT_MODES  # "stream" (opt-in): the Stream runtime on live-paced sources;
    # "throughput" (opt-in): ``streams`` threads calling one runtime at once, calls per second
    streams: tuple[int, ...] = (1, 2, 4, 8)
    seconds: float = 1.5  # timed seconds per worker and round
    rounds: int = 2
    warmup: int = 10
    graph: str | None = None
    fps: float = 30.0  # end_to_end: the stream's frame rate (audio per frame = 1 / fps seconds)
    stream_fps: tuple[float, ...] = (15.0, 30.0, 60.0)  # stream: one run per frame rate
    stream_seconds: float = 4.0  # stream: media seconds per run and round
    progress: bool = False  # a progress bar over the measurement plan (stderr; `edgemm bench` turns it on)
    worker_timeout_s: float | None = None  # per measurement process (None: 240 s + 4 x seconds); a hung worker is stopped
    extra: dict = field(default_factory=dict)
    trust_code: bool | None = None  # None: the caller's edgemm.trust.allow_code() context
    exclude: tuple[str, ...] = ()  # artifact ids not to time (verify: artifacts whose outputs already failed)
    extra_rounds: int = 3  # while a model / end_to_end measurement is unstable, up to this many more rounds ...
    time_cap_s: float | None = None  # ... within this many seconds in all (None: twice what the planned rounds took)
    decide: bool = False  # re-make each int8 artifact's int8-vs-fp32 verdict here and record it (edgemm bench --decide)
    warn_unstable: bool = True  # one warning line when timings are unstable (off where a caller warns for its own table)
    # each artifact at the thread count its export measured and recorded (extra.runner.threads), where it has one:
    # as edgemm.load runs it (verify's ranking); off: every artifact at ``threads``
    recorded_threads: bool = False


def _jobs(bundle: Bundle, cfg: BenchConfig, threads: int, raw_path: Path | None, notes: list[str], media: dict | None = None):
    from ..reference import torch_reference_plan
    from ..trust import code_allowed

    trusted = code_allowed(bundle.root, cfg.trust_code)
    plan = torch_reference_plan(bundle, trusted)
    factory, checkpoint = (plan["factory"], plan["checkpoint"]) if plan["kind"] == "factory" else (None, None)
    if factory and trusted and not _importable(factory):
        factory = checkpoint = None
    jobs = []
    graphs = [bundle.check_graph(cfg.graph)] if cfg.graph else bundle.graphs()
    if len(bundle.graphs()) > 1:
        factory = checkpoint = None  # a recipe factory builds one model; a multi-graph baseline is each graph's program
    plans = {g: torch_reference_plan(bundle.graph(g), trusted) for g in graphs} if len(bundle.graphs()) > 1 else {}
    for art in (a for g in graphs for a in bundle.select(graph=g)):
        plan = plans.get(art.graph, plan)  # each graph's own reference program
        if bundle.artifact_id(art) in cfg.exclude:
            continue
        backend = get_backend(art.backend)
        if not backend.runs(art.format):
            continue  # e.g. an engine source, not an engine: `edgemm compile --target tensorrt` builds it
        if cfg.backends and art.backend not in cfg.backends:
            continue
        if cfg.precisions and art.precision not in cfg.precisions:
            continue
        av = backend.availability()
        if not av.available:
            logger.warning("skipping %s on %s: %s", art.path, art.backend, av.reason)
            continue
        baseline = backend.reference and art.precision == "fp32"
        if baseline and not factory and not trusted:
            notes.append(f"no torch baseline: {plan['reason']}")
            logger.info("skipping the torch baseline %s: %s", art.path, plan["reason"])
            continue
        for mode in cfg.modes:
            if mode == "throughput" and baseline:
                continue  # the deployed artifacts' concurrency; the eager baseline is not a server runtime
            if mode not in ("model", "throughput") and (raw_path is None or art.graph != bundle.default_graph) \
                    or mode == "stream" and (baseline or not media):
                continue  # no raw data; the stream mode measures the deployed artifacts
            recorded = (art.extra.get("runner") or {}).get("threads") if cfg.recorded_threads else None
            for batch, fps, streams in _points(cfg, mode):
                jobs.append({
                    "bundle": str(bundle.root), "graph": art.graph, "artifact": art.path, "backend": art.backend, "precision": art.precision,
                    "mode": mode, "batch": batch, "threads": recorded if isinstance(recorded, int) else threads, "warmup": cfg.warmup,
                    "raw": str(raw_path) if raw_path else None, "baseline": baseline, "trust_code": trusted,
                    "factory": factory if baseline else None, "checkpoint": checkpoint if baseline else None,
                    "id": bundle.artifact_id(art), "size_mb": art.size_bytes(bundle.root) / 1e6, "fps": fps,
                    "media": media.get(fps) if mode == "stream" else None,
                    "seconds": cfg.stream_seconds if mode == "stream" else cfg.seconds, "streams": streams,
                })
    if cfg.backends and reference_backend().name not in cfg.backends:
        logger.info("note: the torch baseline is not in --backends; speedups are not computed")
    return jobs


def _units(jobs: list[dict]) -> list[tuple[int, int | None]]:
    """What each worker process measures: ``(job, None)``, or ``(end_to_end job, its batch-1 model job)``:
    an artifact's end_to_end frames and its model alone run in one process on one runner, interleaved
    in blocks, so that end_to_end / model compares like with like (a fresh process's model p50 spreads
    by up to 2x on a 2-core machine: thread placement, memory layout). Other jobs keep a process each."""
    def key(j):
        return j["artifact"], j["backend"], j["precision"], j["baseline"]

    model_of = {key(j): k for k, j in enumerate(jobs) if j["mode"] == "model" and j["batch"] == 1}
    partner = {}
    for i, j in enumerate(jobs):
        if j["mode"] == "end_to_end" and key(j) in model_of:
            partner[i], partner[model_of[key(j)]] = model_of[key(j)], i
    units, done = [], set()
    for i, j in enumerate(jobs):
        if i in done:
            continue
        if i not in partner:
            unit = (i, None)
        else:
            unit = (i, partner[i]) if j["mode"] == "end_to_end" else (partner[i], i)
        units.append(unit)
        done.update(k for k in unit if k is not None)
    return units


def _points(cfg: BenchConfig, mode: str) -> list[tuple[int, float, int]]:
    """(batch, fps, concurrent callers) per measurement of a mode."""
    if mode == "model":
        return [(b, cfg.fps, 1) for b in cfg.batches]
    if mode == "throughput":
        return [(1, cfg.fps, n) for n in cfg.streams]
    return [(1, f, 1) for f in (cfg.stream_fps if mode == "stream" else (cfg.fps,))]


def _importable(factory: str) -> bool:
    """With opt-in, a user factory that cannot be imported falls back to the torch.export program (as before)."""
    from ..trust import is_trusted_factory
    from ..usercode import import_callable

    if is_trusted_factory(factory):
        return True
    try:
        import_callable(factory)
        return True
    except EdgemmError:
        return False


def _raw_samples(bundle: Bundle, tmp: Path) -> Path | None:
    """A few raw (pre-pre-processing) evaluation samples for end-to-end timing, if the eval data is here."""
    src = bundle.manifest.get("evaluation", {}).get("source")
    if src and not Path(src).is_absolute():
        src = str(bundle.file(src, "evaluation source"))  # relative: inside the bundle
    if not src or not Path(src).is_file():
        return None
    names = [t.name for t in bundle.spec.inputs]
    if any(t.preprocessing is None for t in bundle.spec.inputs):
        return None
    z = read_npz(src, "evaluation data", names={*names, *(f"{n}.sample_rate" for n in names)}, need_rows=names,
                 allowed_kinds=SAMPLE_KINDS, error=SpecError, fix=SAMPLE_FIX)
    if any(n not in z for n in names):
        return None
    arrays = {k: (v if k.endswith(".sample_rate") else v[:32]) for k, v in z.items()}
    path = tmp / "raw.npz"
    np.savez(path, **arrays)
    return path


def worker_timeout_s(cfg: BenchConfig) -> float:
    """A measurement's wall-clock limit: start-up, model load and warm-up (generous: a cold cache on a
    loaded machine) plus the timed seconds."""
    return cfg.worker_timeout_s if cfg.worker_timeout_s is not None else 240.0 + 4.0 * cfg.seconds


def _run_worker(job: dict, timeout_s: float) -> dict:
    # The worker imports this very edgemm (the parent's, first on its path).
    here = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"]),
           "PYTHONPATH": os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "edgemm.bench.worker", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed and reaped it
        raise EdgemmError(f"benchmark worker for {job['id']} on {job['backend']} ({job['mode']}, batch {job['batch']}) "
                          f"did not finish in {timeout_s:g} s and was stopped; raise BenchConfig.worker_timeout_s "
                          "if the machine is that slow") from exc
    if proc.returncode != 0:
        if proc.returncode in (130, -2):
            raise KeyboardInterrupt
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("edgemm: error: ")
        logger.debug("benchmark worker stderr:\n%s", proc.stderr)
        raise EdgemmError(f"benchmark worker for {job['id']} on {job['backend']} failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class _progress:
    """A rich progress bar over the measurement plan (stderr; plain log lines when disabled)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self._p = enabled, total, None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("[bold]bench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                               TimeRemainingColumn(), TextColumn("{task.description}"), console=Console(stderr=True),
                               transient=False)
            self._p.start()
            self._task = self._p.add_task("", total=self.total)
        return self.advance

    def advance(self, what: str) -> None:
        if self._p is not None:
            self._p.update(self._task, advance=1, description=what)
        else:
            logger.info("%s", what)

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.stop()


def benchmark(bundle_dir, config: BenchConfig | None = None, **kwargs) -> dict:
    """Measure every (artifact, backend, batch, mode); returns ``{"machine", "config", "runs"}`` (DESIGN.md keys)."""
    cfg = config or BenchConfig(**kwargs)
    bundle = bundle_dir if isinstance(bundle_dir, Bundle) else Bundle.open(bundle_dir)
    for m in cfg.modes:
        if m not in MODES:
            raise EdgemmError(f"unknown mode {m!r}; use model, end_to_end or stream")
    if "stream" in cfg.modes and (not cfg.stream_fps or min(cfg.stream_fps) <= 0 or cfg.stream_seconds <= 0):
        raise EdgemmError(f"stream frame rates and seconds must be positive, got {list(cfg.stream_fps)} and {cfg.stream_seconds}; "
                          "e.g. stream_fps=(15, 30, 60)")
    if any(b < 1 for b in cfg.batches):
        raise EdgemmError(f"batch sizes must be >= 1, got {list(cfg.batches)}")
    if cfg.rounds < 1 or cfg.seconds <= 0 or (cfg.threads is not None and cfg.threads < 1):
        raise EdgemmError(f"rounds, seconds and threads must be positive, got rounds={cfg.rounds} seconds={cfg.seconds} "
                          f"threads={cfg.threads}; e.g. rounds=2 seconds=1.5")
    for g in ([bundle.check_graph(cfg.graph)] if cfg.graph else bundle.graphs()):
        lead = bundle.specs[g].inputs[0].shape[:1]
        if lead and isinstance(lead[0], str):  # the batch axis: its IOSpec range bounds what can be timed
            r = bundle.specs[g].axis_range(lead[0])
            outside = [b for b in cfg.batches if not r.min <= b <= r.max]
            if outside:
                raise EdgemmError(f"batch size(s) {outside} are outside axis {lead[0]!r} of {bundle.root}"
                                  f"{'' if g == bundle.default_graph else f' graph {g!r}'}: it takes {r.min}..{r.max}; "
                                  "choose --batch within that range")
    threads = cfg.threads or max(1, min(4, os.cpu_count() or 1))
    acc = bundle.report("accuracy") or {}
    with tempfile.TemporaryDirectory(prefix="edgemm-bench-") as tmp:
        notes: list[str] = []
        raw = _raw_samples(bundle, Path(tmp)) if set(cfg.modes) & {"end_to_end", "stream"} else None
        media = None
        if raw is not None and "stream" in cfg.modes:
            from .live import write_media

            media = {f: write_media(raw, f, cfg.stream_seconds, Path(tmp)) for f in cfg.stream_fps}
        elif "stream" in cfg.modes:
            notes.append("no stream runs: the bundle's evaluation data is not here")
        jobs = _jobs(bundle, cfg, threads, raw, notes, media)
        if not jobs:
            why = f" ({'; '.join(notes)})" if notes else ""
            from ..runtime.runtime import selection_line

            raise EdgemmError(f"nothing to benchmark in {bundle.root}: {selection_line(bundle, cfg.backends, cfg.precisions)}{why}")
        pooled: dict[int, list[float]] = {i: [] for i in range(len(jobs))}
        by_round: dict[int, list[list[float]]] = {i: [] for i in range(len(jobs))}  # the same calls, round by round
        stages: dict[int, dict[str, list[float]]] = {}
        rss: dict[int, float] = {}
        served: dict[int, list] = {}
        streams: dict[int, list[dict]] = {}
        units = _units(jobs)
        before = machine_state_now()
        started = time.perf_counter()

        def one_round(label: str, advance) -> None:
            for i, model_i in units:
                job = jobs[i]
                what = f"{label}: {job['id']} on {job['backend']}, {job['mode']}" + \
                    (" + model" if model_i is not None else "") + \
                    (f", {job['fps']:g} fps" if job["mode"] == "stream" else f", batch {job['batch']}")
                logger.debug("%s", what)
                out = _run_worker({**job, "with_model": 1} if model_i is not None else job, worker_timeout_s(cfg))
                pooled[i].extend(out["latencies_ms"])
                by_round[i].append(list(out["latencies_ms"]))
                if "calls" in out:  # throughput: calls completed by all streams over the timed window
                    done = served.setdefault(i, [0, 0.0])
                    done[0] += out["calls"]
                    done[1] += out["elapsed_s"]
                for k, v in out.get("stages_ms", {}).items():
                    stages.setdefault(i, {}).setdefault(k, []).extend(v)
                rss[i] = max(rss.get(i, 0.0), out["peak_rss_mb"])
                if model_i is not None:
                    pooled[model_i].extend(out["model_latencies_ms"])
                    by_round[model_i].append(list(out["model_latencies_ms"]))
                    rss[model_i] = max(rss.get(model_i, 0.0), out["peak_rss_mb"])
                if "stream" in out:
                    streams.setdefault(i, []).append(out["stream"])
                advance(what)

        rounds = max(cfg.rounds, DECIDE_ROUNDS) if cfg.decide else cfg.rounds
        with _progress(cfg.progress, rounds * len(units)) as advance:
            for r in range(rounds):
                one_round(f"round {r + 1}/{rounds}", advance)
        planned_s = time.perf_counter() - started
        cap = cfg.time_cap_s if cfg.time_cap_s is not None else 2 * planned_s
        extra = 0
        while extra < cfg.extra_rounds and _unsteady(jobs, by_round) and time.perf_counter() - started + planned_s / rounds <= cap:
            extra += 1  # repeat until steady, within the cap: every unit again, so rounds stay interleaved
            logger.info("timings unsteady (%s); extra round %d of at most %d", ", ".join(_unsteady(jobs, by_round)[:3]),
                        extra, cfg.extra_rounds)
            with _progress(cfg.progress, len(units)) as advance:
                one_round(f"extra round {extra}", advance)
        after = machine_state_now()
    runs = []
    for i, job in enumerate(jobs):
        a = np.asarray(pooled[i])
        graph_acc = acc.get("graphs", {}).get(job["graph"], acc)
        if job["baseline"]:
            metrics = graph_acc.get("reference", {}).get("metrics", {})
        else:
            metrics = acc.get("artifacts", {}).get(job["id"], {}).get("metrics", {})
        runs.append({
            "id": job["id"], "graph": job["graph"], "artifact": job["artifact"], "backend": job["backend"], "precision": job["precision"], "mode": job["mode"],
            "baseline": job["baseline"], "baseline_source": ("original nn.Module (recipe factory + checkpoint)" if job["factory"]
                                                             else "torch.export program of the original") if job["baseline"] else None,
            "batch": job["batch"], "threads": job["threads"],
            "p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "throughput": float(job["batch"] * 1000.0 / a.mean()), "iterations": int(a.size),
            "peak_rss_mb": round(rss[i], 1), "size_mb": round(job["size_mb"], 4), "metrics": metrics,
            "stability": stats.spread(by_round[i]).to_dict() if job["mode"] in STEADY_MODES else None,
        })
        if i in served:  # throughput: total calls per second of all streams on one runtime (batch 1 each)
            runs[-1].update({"streams": job["streams"], "throughput": round(served[i][0] / served[i][1], 2)})
        if i in stages:  # end_to_end: where the time goes, per video frame at the stream's fps
            runs[-1].update({"path": "streaming", "fps": job["fps"], "stages_ms": {
                k: {q: round(float(np.percentile(v, p)), 4) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))}
                for k, v in stages[i].items()}})
        if i in streams:  # stream: capture-to-result per result of the live-paced Stream at this fps
            from .live import summarize

            runs[-1].update({"fps": job["fps"], "throughput": round(len(a) / (cfg.stream_seconds * len(streams[i])), 2),
                             "stream": summarize(job["fps"], cfg.stream_seconds, streams[i])})
    _ratios(runs, jobs, by_round)
    problems = stats.state_problems(before, after)
    shaky = [(f"{r['id']} {r['backend']} {r['mode']} b{r['batch']}", stats.spread(by_round[i])) for i, r in enumerate(runs)
             if r["stability"] is not None and not r["stability"]["stable"]]
    warning = stats.unstable_line("bench", shaky, problems, "rerun on a quiet machine or with more --rounds")
    if warning and cfg.warn_unstable:
        logger.warning("warning: %s", warning)
    decisions = _decisions(bundle, runs, by_round, problems) if cfg.decide else None
    stability = {"machine": {"before": before, "after": after}, "problems": problems, "extra_rounds": extra,
                 "unstable": [name for name, _ in shaky], "warning": warning,
                 "thresholds": {"tail_max": stats.TAIL_MAX, "drift_max": stats.DRIFT_MAX, "load_per_core_max": stats.LOAD_MAX}}
    return {"machine": machine_info(), "config": {"batches": list(cfg.batches), "threads": threads, "modes": list(cfg.modes),
                                                  "seconds_per_round": cfg.seconds, "rounds": rounds + extra, "fps": cfg.fps,
                                                  **({"stream_fps": list(cfg.stream_fps), "stream_seconds": cfg.stream_seconds}
                                                     if "stream" in cfg.modes else {}),
                                                  "command": " ".join(sys.argv)},
            "bundle": str(bundle.root), "runs": runs, "stability": stability,
            **({"decisions": decisions} if decisions is not None else {}),
            **({"baseline_note": "; ".join(notes)} if notes else {})}


STEADY_MODES = ("model", "end_to_end")
DECIDE_ROUNDS = 6  # --decide: a paired interval needs rounds (stats.MIN_ROUNDS at the least); a deployment is a fresh process


def _decisions(bundle: Bundle, runs: list[dict], by_round: dict[int, list[list[float]]], problems: list[str]) -> list[dict]:
    """``--decide``: for each int8 artifact timed in model mode at the batch its speed verdict is about, the verdict
    re-made from this very measurement: int8 against its fp32 sibling on the same backend (same graph, same format
    where there is one), paired by round (each artifact in its own fresh process, rounds interleaved), as the
    ratio of medians with its paired-bootstrap interval. The table's two p50s are the ratio's inputs."""
    arts = {(bundle.artifact_id(a), a.backend): a for a in bundle.artifacts}
    out = []
    for i, r in enumerate(runs):
        art = arts.get((r["id"], r["backend"]))
        if art is None or r["precision"] != "int8" or r["mode"] != "model" or r["baseline"]:
            continue
        old = art.extra.get("speed") if isinstance(art.extra.get("speed"), dict) else {}
        if r["batch"] != old.get("batch", 1):
            continue
        sib = [k for k, f in enumerate(runs) if f["mode"] == "model" and f["batch"] == r["batch"] and f["precision"] == "fp32"
               and not f["baseline"] and f["backend"] == r["backend"] and f["graph"] == r["graph"]]
        sib.sort(key=lambda k: arts[(runs[k]["id"], runs[k]["backend"])].format != art.format)
        if not sib or len(by_round[sib[0]]) != len(by_round[i]):
            continue
        k = sib[0]
        q = stats.ratio_of_medians(by_round[k], by_round[i])
        tol = float(old.get("tolerance", 0.05))
        steady = q.stable and not problems
        out.append({
            "id": r["id"], "backend": r["backend"], "graph": r["graph"], "fp32": runs[k]["id"], "batch": r["batch"],
            "threads": r["threads"], "vs_fp32": round(q.value, 4), "slower": q.verdict(tol) == "slower", "verdict": q.verdict(tol),
            "interval": [round(q.low, 4), round(q.high, 4)], "confidence": q.confidence, "tolerance": tol, "rounds": q.rounds,
            "stable": steady, "text": stats.verdict_text(q, tol),
            "int8_ms": q.b.p50_ms, "fp32_ms": q.a.p50_ms, "int8_p90_ms": q.b.p90_ms, "fp32_p90_ms": q.a.p90_ms,
            "int8_p99_ms": q.b.p99_ms, "fp32_p99_ms": q.a.p99_ms,
            "measured_by": f"edgemm bench --decide (each artifact in its own process, {q.rounds} interleaved rounds)",
            "previous": {key: old.get(key) for key in ("vs_fp32", "slower", "verdict", "interval", "measured_by") if key in old}})
    return out  # stream and throughput runs are paced or contended on purpose


def machine_state_now() -> dict:
    return stats.machine_state()


def _unsteady(jobs: list[dict], by_round: dict[int, list[list[float]]]) -> list[str]:
    """The model / end_to_end measurements whose calls or round medians are too spread to trust yet."""
    return [f"{j['id']} {j['mode']} b{j['batch']}" for i, j in enumerate(jobs)
            if j["mode"] in STEADY_MODES and by_round[i] and not stats.spread(by_round[i]).stable]


def _ratios(runs: list[dict], jobs: list[dict], by_round: dict[int, list[list[float]]]) -> None:
    """Every ratio a run carries, each with whether its inputs were steady (a table marks the others ``~``):
    ``speedup_vs_baseline`` (baseline p50 / p50, same mode, batch and fps; with its paired interval from 3 rounds on),
    and for end_to_end ``over_model`` (p50 of the whole frame / p50 of the model stage in the same frames: every frame
    contains its model call, so it is >= 1 by construction) and ``over_model_alone`` (/ the model timed alone, in
    blocks interleaved with the frames in the same processes)."""
    steady = {i: (r["stability"] or {}).get("stable", True) for i, r in enumerate(runs)}
    for i, r in enumerate(runs):
        if r["mode"] == "end_to_end":  # what the stream adds to the model, same artifact, same processes
            stage = (r.get("stages_ms") or {}).get("model", {}).get("p50")
            r["over_model"] = round(r["p50_ms"] / stage, 3) if stage else None
            k = next((k for k, m in enumerate(runs) if m["mode"] == "model" and m["batch"] == 1 and m["id"] == r["id"]
                      and m["backend"] == r["backend"] and m["baseline"] == r["baseline"]), None)
            r["over_model_alone"] = round(r["p50_ms"] / runs[k]["p50_ms"], 3) if k is not None else None
            r["over_model_alone_stable"] = steady[i] and steady[k] if k is not None else None
        b = next((k for k, m in enumerate(runs) if m["baseline"] and m["graph"] == r["graph"] and m["mode"] == r["mode"]
                  and m["batch"] == r["batch"] and m.get("fps") == r.get("fps") and m.get("streams") == r.get("streams")), None)
        r["speedup_vs_baseline"] = round(runs[b]["p50_ms"] / r["p50_ms"], 3) if b is not None else None
        r["speedup_stable"] = (steady[i] and steady[b]) if b is not None else None
        if b is not None and b != i and r["mode"] in STEADY_MODES and len(by_round[i]) == len(by_round[b]) >= stats.MIN_ROUNDS:
            q = stats.ratio_of_medians(by_round[i], by_round[b])  # baseline / this: the speedup's interval
            r["speedup_interval"] = [round(q.low, 3), round(q.high, 3)]
