"""Benchmark output: a table for the terminal, JSON, CSV, markdown, and plots through matplotlib
(format from the file extension: .png, .svg, .pdf)."""
from __future__ import annotations

import csv
import json
from html import escape
from pathlib import Path

from ..errors import EdgemmError

COLUMNS = ("graph", "artifact", "backend", "precision", "mode", "streams", "baseline", "batch", "threads", "p50_ms", "p90_ms", "p99_ms",
           "mean_ms", "throughput", "speedup_vs_baseline", "peak_rss_mb", "size_mb")
STREAM_COLUMNS = ("fps", "frames", "dropped_frames", "jitter_ms", "av_skew_p50_ms", "av_skew_p99_ms")


def _stream_values(r: dict) -> list:
    st = r.get("stream")
    if not st:
        return [None] * len(STREAM_COLUMNS)
    return [st["fps"], st["frames"], st["dropped_frames"], st["jitter_ms"], st["av_skew_ms"]["p50"], st["av_skew_ms"]["p99"]]


def _mode(r: dict) -> str:
    if r.get("streams"):
        return f"{r['mode']} x{r['streams']}"
    return f"{r['mode']} {r['fps']:g} fps" if r.get("stream") else r["mode"]


def _stream_lines(result: dict) -> list[str]:
    """The stream runs as a markdown table (capture-to-result, jitter, drops, A/V skew)."""
    runs = [r for r in result["runs"] if r.get("stream")]
    if not runs:
        return []
    out = ["", "stream (live-paced video + wav through edgemm.Stream, policy latest), ms:", "",
           "| artifact | backend | precision | fps | capture-to-result p50 | p99 | jitter | dropped / frames | A/V skew p50 | p99 | model p50 |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in sorted(runs, key=lambda r: (r["artifact"], r["backend"], r["stream"]["fps"])):
        st = r["stream"]
        out.append(f"| {r['artifact']} | {r['backend']} | {r['precision']} | {st['fps']:g} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                   f"{f(st['jitter_ms'])} | {st['dropped_frames']} / {st['frames']} | {f(st['av_skew_ms']['p50'])} | "
                   f"{f(st['av_skew_ms']['p99'])} | {f(st['stage_p50_ms'].get('infer'))} |")
    return out


def format_table(result: dict) -> str:
    m = result["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {' '.join(m['isa']) or '-'}; {m['date']}",
             f"threads {result['config']['threads']}; {result['config']['rounds']} interleaved rounds x "
             f"{result['config']['seconds_per_round']} s per measurement; speedup = baseline p50 / p50 (same mode, batch)"]
    head = f"{'artifact':<30} {'backend':<12} {'prec':<5} {'mode':<13} {'batch':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} " \
           f"{'items/s':>9} {'speedup':>8} {'RSS MB':>7} {'size MB':>8}  top1"
    lines += [head, "-" * len(head)]
    for r in sorted(result["runs"], key=lambda r: (r["mode"], r["batch"], r.get("streams") or 0, not r["baseline"], r["p50_ms"])):
        top1 = " ".join(f"{h} {v:.4f}" for h, v in r["metrics"].items())
        speed = f"{r['speedup_vs_baseline']:.2f}x" if r["speedup_vs_baseline"] else "-"
        name = r["artifact"] + (" *" if r["baseline"] else "")
        lines.append(f"{name:<30} {r['backend']:<12} {r['precision']:<5} {_mode(r):<13} {r['batch']:>5} {r['p50_ms']:>8.3f} "
                     f"{r['p90_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['throughput']:>9.1f} {speed:>8} {r['peak_rss_mb']:>7.0f} "
                     f"{r['size_mb']:>8.3f}  {top1}")
    lines.append("* baseline: the original model in PyTorch eager fp32 under no_grad")
    return "\n".join(lines + _stream_lines(result))


def write_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n")


def _heads(result: dict) -> list[str]:
    return sorted({h for r in result["runs"] for h in r.get("metrics", {})})


def _stages(result: dict) -> list[str]:
    seen = []
    for r in result["runs"]:
        for k in r.get("stages_ms", {}) if r["mode"] == "end_to_end" else ():
            if k not in seen:
                seen.append(k)
    return seen


def write_csv(result: dict, path: str | Path) -> None:
    """One row per run: the DESIGN keys, top-1 per head, and the end_to_end stage medians."""
    heads, stages = _heads(result), _stages(result)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*COLUMNS, *(f"top1_{h}" for h in heads), *(f"{s}_p50_ms" for s in stages), *STREAM_COLUMNS])
        for r in result["runs"]:
            w.writerow([r.get(c) for c in COLUMNS] + [r.get("metrics", {}).get(h) for h in heads]
                       + [r.get("stages_ms", {}).get(s, {}).get("p50") for s in stages] + _stream_values(r))


def format_markdown(result: dict) -> str:
    m, c = result["machine"], result["config"]
    heads, stages = _heads(result), _stages(result)
    out = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, {' '.join(m['isa']) or 'no AVX2'}), "
           f"{c['threads']} threads, {c['rounds']} interleaved rounds x {c['seconds_per_round']} s; medians and p90/p99 in ms."
           + (f" Command: `{c['command']}`." if c.get("command") else ""), "",
           "| artifact | backend | precision | mode | batch | p50 ms | p90 ms | p99 ms | speedup | size MB | "
           + " | ".join(f"top-1 {h}" for h in heads) + " |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(heads)]
    for r in sorted(result["runs"], key=lambda r: (r["mode"], r["batch"], r.get("streams") or 0, not r["baseline"], r["p50_ms"])):
        sp = f"{r['speedup_vs_baseline']:.2f}x" if r.get("speedup_vs_baseline") else "-"
        top = " | ".join(f"{r['metrics'][h]:.4f}" if h in r.get("metrics", {}) else "-" for h in heads)
        out.append(f"| {r['artifact']}{' (baseline)' if r['baseline'] else ''} | {r['backend']} | {r['precision']} | {_mode(r)} | "
                   f"{r['batch']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {sp} | {r['size_mb']:.3f} | {top} |")
    e2e = [r for r in result["runs"] if r.get("stages_ms") and r["mode"] == "end_to_end"]
    if e2e:
        out += ["", f"end_to_end per video frame at {e2e[0].get('fps', 30):g} fps, stage medians (ms):", "",
                "| artifact | backend | precision | " + " | ".join(stages) + " | total p50 | x model p50 |",
                "|---|---|---|" + "---:|" * (len(stages) + 2)]
        for r in e2e:
            ratio = f"{r['over_model']:.2f}x" if r.get("over_model") else "-"
            out.append(f"| {r['artifact']} | {r['backend']} | {r['precision']} | "
                       + " | ".join(f"{r['stages_ms'][s]['p50']:.3f}" if s in r["stages_ms"] else "-" for s in stages)
                       + f" | {r['p50_ms']:.3f} | {ratio} |")
        out += ["", "x model p50: end_to_end p50 / the same artifact's model p50 at batch 1 (both timed in the same "
                "worker processes, interleaved)."]
    return "\n".join(out + _stream_lines(result)) + "\n"


def write_markdown(result: dict, path: str | Path) -> None:
    Path(path).write_text(format_markdown(result))


PLOT_FORMATS = (".png", ".svg", ".pdf")


def write_plot(result: dict, path: str | Path) -> None:
    """Two panels: latency per artifact (p50 bar, p90 and p99 marks; model mode at batch 1, and
    end_to_end) and latency vs top-1 (first head). Format from the extension."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_FORMATS:
        raise EdgemmError(f"--plot {path}: use a .png, .svg or .pdf file name")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgemmError("--plot needs matplotlib (an edgemm dependency that is missing here): pip install matplotlib") from None
    runs = [r for r in result["runs"] if r["batch"] == 1]
    heads = _heads(result)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, max(3.5, 0.4 * len(runs) + 1.5)))
    runs = sorted(runs, key=lambda r: (r["mode"], r["p50_ms"]))
    labels = [f"{r['artifact']} ({r['backend']} {r['precision']}, {r['mode']}{' %g fps' % r['fps'] if r.get('stream') else ''})"
              for r in runs]
    colours = ["#888" if r["baseline"] else {"int8": "#2a7", "fp16": "#57c", "fp32": "#c74"}.get(r["precision"], "#999") for r in runs]
    y = list(range(len(runs)))
    ax1.barh(y, [r["p50_ms"] for r in runs], color=colours)
    ax1.scatter([r["p90_ms"] for r in runs], y, marker="|", color="k", s=120, label="p90")
    ax1.scatter([r["p99_ms"] for r in runs], y, marker="x", color="k", s=30, label="p99")
    ax1.set_yticks(y, labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("latency, ms (bar: p50)")
    ax1.legend(loc="lower right", fontsize=8)
    if heads:
        h = heads[0]
        for r, col in zip(runs, colours):
            if h in r.get("metrics", {}) and r["mode"] == "model":
                ax2.scatter(r["p50_ms"], r["metrics"][h], color=col, s=40)
                ax2.annotate(f"{r['backend']} {r['precision']}", (r["p50_ms"], r["metrics"][h]), fontsize=7,
                             xytext=(3, 3), textcoords="offset points")
        ax2.set_xlabel("model latency p50, ms (batch 1)")
        ax2.set_ylabel(f"top-1 ({h})")
    else:
        ax2.set_axis_off()
    m, c = result["machine"], result["config"]
    fig.suptitle(f"edgemm bench: {m['cpu']}, {c['threads']} threads, {m['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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
