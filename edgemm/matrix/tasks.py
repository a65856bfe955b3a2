"""The two tasks of a cell, run where the runner places them (this process, or a Ray worker):

- ``build``: ``edgemm.export`` of the cell's model for its target and precision, verified as every export
  is (a complete bundle); it is written into the output folder (local runs) or returned as a tar archive
  that the driver unpacks there (Ray: no shared file system needed);
- ``measure``: ``edgemm.verify`` again where the cell's device kind runs it (parity + accuracy on that
  machine, no timing; the reports stay the build's) and ``edgemm.benchmark`` of the cell's artifact;
  returns the cell's row (top-1 from this verification, p50 from the benchmark).

Both return plain dicts and never raise for the cell's own failures (a failed cell is a row with its
one-line error); only an interrupt or a lost worker ends a task otherwise. Nothing here imports Ray.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from ..errors import BackendUnavailable, EdgemmError, one_line, os_error_line

ARCHIVE_ROOT = "bundle"


def where() -> dict:
    """This process's host, and its Ray node when it runs as a Ray task."""
    out = {"host": socket.gethostname(), "pid": os.getpid()}
    if "ray" in sys.modules:  # a Ray worker: the node id tells the nodes of one host apart (a loopback cluster)
        try:
            out["ray_node"] = sys.modules["ray"].get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - not inside a task (a local run after a Ray one): no node id
            pass
    return out


def _failure(exc: BaseException, stage: str) -> dict:
    if isinstance(exc, BackendUnavailable):
        status = "unavailable"
    else:
        status = "failed"
    if isinstance(exc, EdgemmError):
        line = str(exc)
    elif isinstance(exc, OSError):
        line = os_error_line(exc)
    else:
        line = f"internal error: {type(exc).__name__}: {one_line(exc)} (a bug in edgemm or a library it calls)"
    return {"status": status, "stage": stage, "error": f"{stage}: {line}"}


def build(cell: dict, into: str | None = None) -> dict:
    """Export the cell's bundle; ``into``: its final folder (else a temp folder, returned as ``archive`` bytes)."""
    from ..configure import export

    t0 = time.monotonic()
    tmp = None if into else tempfile.mkdtemp(prefix="edgemm-matrix-")
    out = Path(into) if into else Path(tmp) / ARCHIVE_ROOT
    opts = {k: dict(v) for k, v in (cell.get("options") or {}).items()}
    if cell["precision"] == "fp16":
        opts["export"] = {**opts.get("export", {}), "fp16": True}
    result: dict = {"where": where()}
    try:
        try:
            export(cell["path"], output=out, targets=[cell["target"]], int8=cell["precision"] == "int8",
                   prune=cell.get("prune"), options=opts or None, calibration=cell.get("calibration"),
                   evaluation=cell.get("evaluation"))
            result["status"] = "built"
        except EdgemmError as exc:
            if not (out / "manifest.json").is_file():
                raise
            # written, then a budget missed (BudgetNotMet, PruneBudgetNotMet): measured like any bundle, flagged
            result.update(status="built", note=str(exc))
        if tmp is not None:
            result["archive"] = pack(out)
        else:
            result["path"] = str(out)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the cell's own failure becomes its row
        result.update(_failure(exc, "export"))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - t0, 2)
    return result


def measure(cell: dict, built: dict, bench: dict) -> dict:
    """Verify and time the cell's artifact where this task runs; the cell's row (without the plan's keys)."""
    t0 = time.monotonic()
    row: dict = {"where": where(), "build_where": built.get("where")}
    if built.get("status") != "built":
        return {**row, **{k: built[k] for k in ("status", "stage", "error") if k in built}, "seconds": 0.0}
    tmp, stage = None, "verify"
    try:
        if "archive" in built:
            tmp = tempfile.mkdtemp(prefix="edgemm-matrix-")
            root = unpack(built["archive"], Path(tmp))
        else:
            root = Path(built["path"])
        from ..stages.verify import verify

        checked = verify(root, write=False, latency=False, threads=bench.get("threads"))  # raises on a breach: one line
        stage = "bench"
        row.update(_bench(cell, root, bench))
        _device_top1(row, checked.accuracy)
        if built.get("note"):
            row.update(status="over-budget", note=built["note"])
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the cell's own failure becomes its row
        row.update(_failure(exc, stage))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    row["seconds"] = round(time.monotonic() - t0 + built.get("seconds", 0.0), 2)
    return row


def _bench(cell: dict, root: Path, bench: dict) -> dict:
    from ..bench.run import BenchConfig, benchmark

    result = benchmark(root, BenchConfig(backends=(cell["target"],), precisions=(cell["precision"],),
                                         batches=(bench["batch"],), threads=bench.get("threads"), modes=("model",),
                                         seconds=bench["seconds"], rounds=bench["rounds"], warmup=bench["warmup"]))
    runs = [r for r in result["runs"] if r["backend"] == cell["target"] and r["precision"] == cell["precision"]
            and not r.get("baseline") and r["batch"] == bench["batch"] and r["mode"] == "model"]
    if not runs:
        raise EdgemmError(f"the bundle has no {cell['precision']} artifact that {cell['target']} runs; drop that "
                          "precision for this target from the plan")
    run = min(runs, key=lambda r: r["p50_ms"])
    metrics = dict(run.get("metrics") or {})
    head = next(iter(metrics), None)
    return {"status": "ok", "p50_ms": run["p50_ms"], "p90_ms": run.get("p90_ms"), "top1": metrics.get(head) if head else None,
            "head": head, "metrics": metrics, "artifact": run["artifact"], "backend": run["backend"], "threads": run.get("threads"),
            "machine": {k: result["machine"].get(k) for k in ("cpu", "cores", "isa") if k in result["machine"]}}


def _device_top1(row: dict, accuracy: dict | None) -> None:
    """Top-1 of the benched artifact as this machine's verification measured it (the bench's is the build's)."""
    for entry in ((accuracy or {}).get("artifacts") or {}).values():
        if entry.get("path") == row.get("artifact") and entry.get("backend") == row.get("backend") and entry.get("metrics"):
            row["metrics"] = dict(entry["metrics"])
            row["head"] = next(iter(row["metrics"]))
            row["top1"] = row["metrics"][row["head"]]
            return


def pack(folder: Path) -> bytes:
    """A bundle folder as tar.gz bytes (what a Ray task returns to the driver)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=ARCHIVE_ROOT)
    return buf.getvalue()


def unpack(archive: bytes, dest: Path) -> Path:
    """Unpack a bundle archive under ``dest``; returns the bundle folder. Members may not leave ``dest``."""
    dest = Path(dest)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for m in tar.getmembers():
            name = Path(m.name)
            if name.is_absolute() or ".." in name.parts or not (m.isfile() or m.isdir()) or name.parts[:1] != (ARCHIVE_ROOT,):
                raise EdgemmError(f"a bundle archive holds {m.name!r}, which is no bundle file; the archive is not edgemm's")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python before 3.11.4: the members were checked above
            tar.extractall(dest)
    return dest / ARCHIVE_ROOT
