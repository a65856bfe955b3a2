"""Benchmark output: a table for the terminal, JSON, and an SVG bar chart (no plotting dependency)."""
from __future__ import annotations

import json
from html import escape
from pathlib import Path


def format_table(result: dict) -> str:
    m = result["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {' '.join(m['isa']) or '-'}; {m['date']}",
             f"threads {result['config']['threads']}; {result['config']['rounds']} interleaved rounds x "
             f"{result['config']['seconds_per_round']} s per measurement; speedup = baseline p50 / p50 (same mode, batch)"]
    head = f"{'artifact':<30} {'backend':<12} {'prec':<5} {'mode':<10} {'batch':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} " \
           f"{'items/s':>9} {'speedup':>8} {'RSS MB':>7} {'size MB':>8}  top1"
    lines += [head, "-" * len(head)]
    for r in sorted(result["runs"], key=lambda r: (r["mode"], r["batch"], not r["baseline"], r["p50_ms"])):
        top1 = " ".join(f"{h} {v:.4f}" for h, v in r["metrics"].items())
        speed = f"{r['speedup_vs_baseline']:.2f}x" if r["speedup_vs_baseline"] else "-"
        name = r["artifact"] + (" *" if r["baseline"] else "")
        lines.append(f"{name:<30} {r['backend']:<12} {r['precision']:<5} {r['mode']:<10} {r['batch']:>5} {r['p50_ms']:>8.3f} "
                     f"{r['p90_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['throughput']:>9.1f} {speed:>8} {r['peak_rss_mb']:>7.0f} "
                     f"{r['size_mb']:>8.3f}  {top1}")
    lines.append("* baseline: the original model in PyTorch eager fp32 under no_grad")
    return "\n".join(lines)


def write_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n")


def write_svg(result: dict, path: str | Path, mode: str = "model", batch: int = 1) -> None:
    """Horizontal bars of p50 latency (whisker to p90) for one mode and batch size."""
    runs = sorted((r for r in result["runs"] if r["mode"] == mode and r["batch"] == batch), key=lambda r: r["p50_ms"])
    if not runs:
        runs = sorted((r for r in result["runs"] if r["mode"] == result["runs"][0]["mode"]), key=lambda r: r["p50_ms"])
    width, left, row = 820, 330, 26
    top = 50
    height = top + row * len(runs) + 40
    vmax = max(r["p90_ms"] for r in runs) * 1.1
    scale = (width - left - 30) / vmax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="14">edgemm bench: {escape(mode)} latency, batch {batch} (bar p50, whisker p90, ms)</text>',
           f'<text x="10" y="38" fill="#555">{escape(result["machine"]["cpu"])}, {result["config"]["threads"]} threads, {escape(result["machine"]["date"])}</text>']
    for i, r in enumerate(runs):
        y = top + i * row
        colour = "#888" if r["baseline"] else {"int8": "#2a7", "fp16": "#57c", "fp32": "#c74"}.get(r["precision"], "#999")
        label = f"{r['artifact']} ({r['backend']} {r['precision']})"
        out.append(f'<text x="{left - 6}" y="{y + 16}" text-anchor="end">{escape(label)}</text>')
        out.append(f'<rect x="{left}" y="{y + 4}" width="{max(1.0, r["p50_ms"] * scale):.1f}" height="16" fill="{colour}"/>')
        x90 = left + r["p90_ms"] * scale
        out.append(f'<line x1="{left + r["p50_ms"] * scale:.1f}" y1="{y + 12}" x2="{x90:.1f}" y2="{y + 12}" stroke="#333"/>')
        out.append(f'<text x="{x90 + 4:.1f}" y="{y + 16}">{r["p50_ms"]:.2f}</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out) + "\n")
