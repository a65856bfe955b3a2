"""`edgemm matrix`: a plan of models x targets x precisions x device kinds, each cell exported, verified and
benchmarked (here, or as Ray tasks on the nodes of each device kind); one report, resumable."""
from __future__ import annotations

ORDER = 55


def _check_json(path: str) -> None:
    import os
    from pathlib import Path

    from ...errors import EdgemmError

    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise EdgemmError(f"--json {path}: that is a folder; give a file path, e.g. --json {p / 'matrix.json'}")
    if not parent.is_dir():
        raise EdgemmError(f"--json {path}: folder {parent} does not exist; create it or choose another path")
    if not os.access(p, os.W_OK) if p.exists() else not os.access(parent, os.W_OK | os.X_OK):
        raise EdgemmError(f"--json {path}: not writable (permission denied); choose another path")


def cmd_matrix(args) -> int:
    import sys

    from ...errors import EdgemmError
    from ...matrix import REPORT, load_plan, markdown, run_matrix

    if args.json:
        _check_json(args.json)  # before minutes of exports, not after
    plan = load_plan(args.plan)
    report = run_matrix(plan, ray=args.ray, output=args.output, json_path=args.json, fresh=args.fresh,
                        progress=not args.no_progress and sys.stderr.isatty())
    print(markdown(report), end="")
    out = report["output"]
    print(f"report: {out}/{REPORT}.json, {REPORT}.md, {REPORT}.svg; state: {out}/matrix.state.json"
          + (f"; --json {args.json}" if args.json else ""))
    bad = {s: n for s, n in report["summary"]["status"].items() if s in ("failed", "lost")}
    if bad:
        counts = ", ".join(f"{n} {s}" for s, n in bad.items())
        raise EdgemmError(f"{counts} of {report['summary']['cells']} cells (see the report's error column); finished cells are "
                          f"recorded in {out}/matrix.state.json: run the same command again to run only the others")
    return 0


def register(sub) -> None:
    m = sub.add_parser("matrix", help="export, verify and bench a plan of models x targets x precisions x device kinds",
                       description="Run each cell of a plan (a .toml: [matrix] targets, precisions, device_kinds; [[models]] "
                                   "recipes; [bench]): export the model for the cell's target and precision, verify it and "
                                   "time it on the cell's device kind. Without --ray the cells run here, one after another; "
                                   "with --ray each cell is a Ray task, placed on a node started with --resources "
                                   "'{\"KIND\": 1}' for its device kind. Finished cells are recorded beside the report: a rerun "
                                   "(after a node was lost, say) runs only the missing cells.",
                       epilog="example: edgemm matrix export/matrix.toml --json build/matrix.json "
                              "(Ray: ray start --head; edgemm matrix export/matrix.toml --ray auto)")
    m.add_argument("plan", metavar="PLAN.toml", help="the plan (see export/matrix.toml)")
    m.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the cells as Ray tasks on this cluster (host:port, ray://host:port or auto); needs "
                        "pip install 'edgemm[ray]'")
    m.add_argument("--json", default=None, metavar="F", help="also write the report (one row per cell) to F")
    m.add_argument("-o", "--output", default=None, metavar="DIR",
                   help="bundles, report and state folder (default: the plan's [matrix] output)")
    m.add_argument("--fresh", action="store_true", help="ignore the recorded state: run every cell again")
    m.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when stderr is not a terminal)")
    m.set_defaults(func=cmd_matrix)
