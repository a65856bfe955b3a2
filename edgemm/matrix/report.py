"""The matrix report: one row per cell as JSON, a markdown table and a plot (latency per cell, top-1 beside it)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import EdgemmError

KEYS = ("model", "target", "precision", "device_kind", "status", "p50_ms", "top1")


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _node(row: dict) -> str:
    w = row.get("node") or {}
    return (w.get("ray_node") or "")[:8] or w.get("host", "")


def markdown(report: dict) -> str:
    s = report["summary"]
    lines = [f"# edgemm matrix: {report['plan']}", "",
             f"{s['cells']} cells: " + ", ".join(f"{v} {k}" for k, v in s["status"].items()) +
             (f"; Ray cluster {report['ray']['address']}" if report.get("ray") else "; run here, one cell after another"), "",
             "| model | target | precision | device kind | status | p50 ms | top1 | node | note |",
             "|---|---|---|---|---|---:|---:|---|---|"]
    for r in report["rows"]:
        p50 = f"{r['p50_ms']:.3f}" if r.get("p50_ms") is not None else ""
        top1 = f"{r['top1']:.4f}" if r.get("top1") is not None else ""
        note = (r.get("error") or r.get("note") or "").replace("|", "/")
        lines.append(f"| {r['model']} | {r['target']} | {r['precision']} | {r['device_kind']} | {r['status']} | {p50} | {top1} | "
                     f"{_node(r)} | {note[:160]} |")
    return "\n".join(lines) + "\n"


def write_plot(report: dict, path: Path) -> None:
    """p50 latency per finished cell (bars), its top-1 as a label; format from the extension (.svg/.png/.pdf)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgemmError("the matrix plot needs matplotlib (an edgemm dependency that is missing here): pip install matplotlib") from None
    rows = [r for r in report["rows"] if r.get("p50_ms") is not None]
    fig, ax = plt.subplots(figsize=(10, max(2.5, 0.35 * len(rows) + 1.2)))
    if rows:
        y = list(range(len(rows)))
        colours = [{"int8": "#2a7", "fp16": "#57c", "fp32": "#c74"}.get(r["precision"], "#999") for r in rows]
        ax.barh(y, [r["p50_ms"] for r in rows], color=colours)
        ax.set_yticks(y, [f"{r['model']} {r['target']} {r['precision']} [{r['device_kind']}]" for r in rows], fontsize=8)
        for i, r in enumerate(rows):
            if r.get("top1") is not None:
                ax.annotate(f"top1 {r['top1']:.3f}", (r["p50_ms"], i), fontsize=7, xytext=(3, -3), textcoords="offset points")
        ax.invert_yaxis()
        ax.set_xlabel("latency p50, ms (model, batch %d)" % report["bench"]["batch"])
    else:
        ax.text(0.5, 0.5, "no cell finished", ha="center", va="center")
        ax.set_axis_off()
    fig.suptitle(f"edgemm matrix: {Path(report['plan']).name}, {report['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
