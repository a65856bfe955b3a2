"""Running a plan's cells: here, one after another, or as Ray tasks placed by device kind.

Per cell two tasks (edgemm.matrix.tasks): ``build`` where the target needs it (a backend whose device is
a GPU builds on the cell's device kind; any other builds on whichever node is free) and ``measure``
(verify + bench) on the cell's device kind: a Ray custom resource of that name, one unit per cell, so a
device times one cell at a time. Built bundles are gathered into the output folder and recorded in the
state file as they arrive, rows as they finish; a cell whose node is lost (or whose device kind has no
live node for ``wait_node_s``) is ``lost`` and runs again on the next run of the plan.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import BackendUnavailable, EdgemmError, one_line
from ..log import logger
from . import tasks
from .plan import ANY, Cell, Plan
from .state import State

CHECK_NODES_S = 2.0


def row_of(cell: Cell, raw: dict) -> dict:
    """The report's row of a cell: the contract's keys first, then what else is known."""
    row = {"model": cell.model, "target": cell.target, "precision": cell.precision, "device_kind": cell.device_kind,
           "status": raw.get("status", "failed"), "p50_ms": raw.get("p50_ms"), "top1": raw.get("top1")}
    for k in ("head", "metrics", "p90_ms", "artifact", "error", "note", "seconds", "threads", "machine"):
        if raw.get(k) is not None:
            row[k] = raw[k]
    for k, src in (("node", "where"), ("build_node", "build_where")):
        if raw.get(src):
            row[k] = raw[src]
    if raw.get("status") in ("ok", "over-budget", "failed") and raw.get("stage") != "export":
        row["bundle"] = cell.folder
    return row


class Progress:
    """A rich progress bar over the cells (stderr), or a log line per cell when off."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.enabled, self.total, self.done, self._p = enabled, total, done, None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

            self._p = Bar(TextColumn("[bold]matrix"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          TextColumn("{task.description}"), console=Console(stderr=True), transient=False)
            self._p.start()
            self._task = self._p.add_task("", total=self.total, completed=self.done)
        return self

    def running(self, what: str) -> None:
        if self._p is not None:
            self._p.update(self._task, description=what)

    def finished(self, row: dict) -> None:
        line = (f"{row['model']} {row['target']} {row['precision']} [{row['device_kind']}]: {row['status']}"
                + (f", p50 {row['p50_ms']:.3f} ms" if row.get("p50_ms") is not None else "")
                + (f", top1 {row['top1']:.4f}" if row.get("top1") is not None else "")
                + (f" ({row['error']})" if row.get("error") else ""))
        if self._p is not None:
            self._p.console.print(line, markup=False, highlight=False)
            self._p.update(self._task, advance=1)
        else:
            logger.info("matrix: %s", line)

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.stop()


class _quiet:
    """edgemm's progress lines off while cells run in this process (the bar and one line per cell say enough)."""

    def __enter__(self):
        self.level = logger.level
        if logger.getEffectiveLevel() > logging.DEBUG:
            logger.setLevel(logging.WARNING)

    def __exit__(self, *exc):
        logger.setLevel(self.level)


def run_local(plan: Plan, state: State, pending: list[Cell], bar: Progress) -> dict[str, dict]:
    """Every pending cell here, one after another (device kinds are labels: this machine runs them all)."""
    rows: dict[str, dict] = {}
    bench = _bench(plan)
    for cell in pending:
        bar.running(cell.id)
        with _quiet():
            built = state.built(cell)
            if built is None:
                built = tasks.build(cell.payload(), into=str(state.output / cell.folder))
                if built["status"] == "built":
                    state.record_built(cell, built)
            raw = tasks.measure(cell.payload(), built, bench)
        rows[cell.id] = row_of(cell, raw)
        state.record_row(cell, rows[cell.id])
        bar.finished(rows[cell.id])
    return rows


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailable(f"edgemm matrix --ray needs Ray ({exc}): pip install 'edgemm[ray]'; or leave out --ray to "
                                 "run the plan here, one cell after another") from exc
    return ray


@dataclass
class _Job:
    cell: Cell
    build_ref: object | None
    measure_ref: object | None
    lost: str | None = None


def _placement(cell: Cell) -> tuple[dict, dict]:
    """Ray task options of the cell's build and measure."""
    from ..backends.registry import get_backend

    gpu = get_backend(cell.target).device == "gpu"
    measure: dict = {"num_cpus": 1, "max_retries": 0}
    if cell.device_kind != ANY:
        measure["resources"] = {cell.device_kind: 1}
    elif gpu:
        measure["num_gpus"] = 1
    build = dict(measure) if gpu else {"num_cpus": 1, "max_retries": 0}  # a GPU target builds on the device it targets
    return build, measure


def run_ray(plan: Plan, state: State, pending: list[Cell], bar: Progress, address: str) -> tuple[dict[str, dict], dict]:
    """Every pending cell as Ray tasks on the cluster at ``address``; returns the rows and what the cluster was."""
    ray = import_ray()
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EdgemmError(f"cannot reach the Ray cluster at {address}: {one_line(exc)[:300]}; start one with `ray start --head` "
                          "(and give its address, e.g. --ray 127.0.0.1:6379 or --ray auto), or leave out --ray") from exc
    try:
        cluster = {"address": address, "nodes": _nodes(ray)}
        # Ray's driver prints the cluster's error events (a raylet's death with its state dump) to stdout; the rows
        # say what a lost node meant for the plan, so they go to the debug log (-v).
        with contextlib.redirect_stdout(_DebugLog("ray")):
            rows = _run_jobs(ray, plan, state, pending, bar)
        return rows, cluster
    finally:
        with contextlib.redirect_stdout(_DebugLog("ray")):
            ray.shutdown()


class _DebugLog(io.TextIOBase):
    """A text stream whose lines go to edgemm's log at debug level."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                logger.debug("%s: %s", self.prefix, line)
        return len(text)


def _nodes(ray) -> list[dict]:
    return [{"node_id": n["NodeID"], "alive": bool(n.get("Alive")), "address": n.get("NodeManagerAddress"),
             "resources": {k: v for k, v in (n.get("Resources") or {}).items() if not k.startswith("node:")}}
            for n in ray.nodes()]


def _run_jobs(ray, plan: Plan, state: State, pending: list[Cell], bar: Progress) -> dict[str, dict]:
    from ray.exceptions import RayError

    build_fn, measure_fn = ray.remote(tasks.build), ray.remote(tasks.measure)
    bench = _bench(plan)
    rows: dict[str, dict] = {}
    refs: dict = {}  # ObjectRef -> (job, "build" | "measure")
    jobs = []
    for cell in pending:
        build_opts, measure_opts = _placement(cell)
        built = state.built(cell)
        if built is not None:  # gathered by an earlier run: shipped to the device, not built again
            folder = Path(built.pop("path"))
            build_ref, arg = None, ray.put({**built, "archive": tasks.pack(folder)})
        else:
            build_ref = arg = build_fn.options(**build_opts).remote(cell.payload(), None)
        job = _Job(cell, build_ref, measure_fn.options(**measure_opts).remote(cell.payload(), arg, bench))
        jobs.append(job)
        if build_ref is not None:
            refs[build_ref] = (job, "build")
        refs[job.measure_ref] = (job, "measure")

    def finish(job: _Job, raw: dict) -> None:
        for ref in (job.build_ref, job.measure_ref):
            refs.pop(ref, None)
        rows[job.cell.id] = row_of(job.cell, raw)
        state.record_row(job.cell, rows[job.cell.id])
        bar.finished(rows[job.cell.id])

    missing_since: dict[str, float] = {}
    last_check = 0.0
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
        for ref in ready:
            if ref not in refs:
                continue
            job, what = refs.pop(ref)
            try:
                value = ray.get(ref)
            except RayError as exc:  # the node or worker went away (or the task was cancelled): run again next time
                reason = job.lost or f"{type(exc).__name__}: {one_line(exc)[:240]}"
                if what == "build":
                    job.lost = reason  # its measure task fails on the missing input; it ends the cell
                else:
                    finish(job, {"status": "lost", "error": f"lost: {reason}; run the plan again to finish this cell"})
                continue
            if what == "build":
                job.build_ref = None
                if value.get("status") == "built":
                    _gather(state, job.cell, value)
                bar.running(f"{job.cell.id} built")
            else:
                finish(job, value)
        now = time.monotonic()
        if refs and now - last_check > CHECK_NODES_S:
            last_check = now
            _drop_unplaceable(ray, plan, jobs, refs, missing_since, now, finish)
    return rows


def _drop_unplaceable(ray, plan: Plan, jobs, refs, missing_since: dict, now: float, finish) -> None:
    """Cells whose device kind no live node offers for ``wait_node_s`` are cancelled and counted lost."""
    alive = {k for n in ray.nodes() if n.get("Alive") for k, v in (n.get("Resources") or {}).items() if v > 0}
    for job in jobs:
        kind = job.cell.device_kind
        if kind == ANY or job.measure_ref not in refs:
            continue
        if kind in alive:
            missing_since.pop(kind, None)
            continue
        since = missing_since.setdefault(kind, now)
        if now - since < plan.matrix.wait_node_s:
            continue
        for ref in (job.build_ref, job.measure_ref):
            if ref is not None and ref in refs:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or gone with its node: nothing to cancel
                    pass
        finish(job, {"status": "lost", "error": f"lost: no live node offers device kind {kind!r} for "
                                                f"{plan.matrix.wait_node_s:g}s (start one with ray start --address ... "
                                                f"--resources '{{\"{kind}\": 1}}'), then run the plan again"})


def _gather(state: State, cell: Cell, built: dict) -> None:
    """A built bundle unpacked into the output folder (replacing an older one of the same cell) and recorded."""
    dest = state.output / cell.folder
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".gather-", dir=dest.parent))
    try:
        root = tasks.unpack(built["archive"], tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(root, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    state.record_built(cell, built)


def _bench(plan: Plan) -> dict:
    b = plan.bench
    return {"batch": b.batch, "rounds": b.rounds, "seconds": b.seconds, "warmup": b.warmup, "threads": b.threads}
