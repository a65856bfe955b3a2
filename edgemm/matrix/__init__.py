"""The build-and-bench matrix: ``edgemm matrix PLAN.toml [--ray ADDRESS] [--json F]``.

- ``plan``: the plan file (models x targets x precisions x device kinds), checked like a recipe;
- ``tasks``: a cell's build (edgemm.export) and measure (edgemm.verify + edgemm.benchmark);
- ``runner``: the cells here one after another (a progress bar), or as Ray tasks placed by device kind;
- ``state``: finished cells and gathered bundles, so a rerun finishes only the missing cells;
- ``report``: one row per cell, {model, target, precision, device_kind, status, p50_ms, top1}, as JSON,
  markdown and a plot.

Ray is optional (``pip install 'edgemm[ray]'``): only ``--ray`` imports it.
"""
from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from .plan import Cell, Plan, load_plan
from .report import KEYS, markdown, write_json, write_plot
from .state import FINISHED, State

__all__ = ["Cell", "Plan", "KEYS", "FINISHED", "load_plan", "run_matrix", "REPORT"]

REPORT = "matrix"  # OUTPUT/matrix.json, .md, .svg beside matrix.state.json


def run_matrix(plan: str | Path | Plan, *, ray: str | None = None, output: str | Path | None = None,
               json_path: str | Path | None = None, fresh: bool = False, progress: bool = False) -> dict:
    """Run every cell of ``plan`` not finished yet (here, or on the Ray cluster at ``ray``); write the report
    (OUTPUT/matrix.json, .md, .svg and ``json_path``) and return it. Cells that fail or are lost are rows with
    their status; this function raises only for the plan itself, the cluster or the output folder."""
    from ..bench.machine import machine_info
    from .runner import Progress, run_local, run_ray, row_of

    plan = plan if isinstance(plan, Plan) else load_plan(plan)
    if ray:
        from .runner import import_ray

        import_ray()  # a missing Ray is one line before anything is made
    out = plan.output(str(output) if output else None)
    t0 = time.monotonic()
    cluster = None
    with State(out, fresh=fresh) as state:
        done = {c.id: state.finished(c) for c in plan.cells}
        pending = [c for c in plan.cells if done[c.id] is None]
        with Progress(progress, len(plan.cells), len(plan.cells) - len(pending)) as bar:
            if not pending:
                rows = {}
            elif ray:
                rows, cluster = run_ray(plan, state, pending, bar, ray)
            else:
                rows = run_local(plan, state, pending, bar)
        ordered = []
        for c in plan.cells:
            row = rows.get(c.id) or done[c.id]
            if row is None:  # not reached (an interrupted run): nothing recorded
                row = row_of(c, {"status": "lost", "error": "not run; run the plan again"})
            ordered.append({**row, "rerun": c.id in rows})
    statuses: dict[str, int] = {}
    for r in ordered:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    report = {
        "format": 1,
        "plan": str(plan.path),
        "output": str(out),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ray": cluster,
        "machine": machine_info(),
        "bench": {f: getattr(plan.bench, f) for f in ("batch", "rounds", "seconds", "warmup", "threads")},
        "wall_s": round(time.monotonic() - t0, 1),
        "summary": {"cells": len(ordered), "ran": len(rows), "skipped": len(plan.cells) - len(pending), "status": statuses},
        "rows": ordered,
    }
    write_json(report, out / f"{REPORT}.json")
    (out / f"{REPORT}.md").write_text(markdown(report))
    write_plot(report, out / f"{REPORT}.svg")
    if json_path:
        target = Path(json_path)
        if target.resolve() != (out / f"{REPORT}.json").resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / f"{REPORT}.json", target)
    return report
