"""Benchmark output: a table for the terminal, JSON, CSV, markdown, and plots through matplotlib
(format from the file extension: .png, .svg, .pdf)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import EdgemmError
from . import stats

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


WIDTH = 100  # the terminal table fits this many columns; everything else is in --json / --csv
BASELINE_NAME = "torch eager (reference)"  # the baseline is the user's original model run eagerly, not an artifact


def _name(r: dict) -> str:
    return BASELINE_NAME if r["baseline"] else r["artifact"]


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` from the left (the file name at the end of a path says the most)."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _ms(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 100 else f"{v:.1f}" if v < 10000 else f"{v:.0f}"


def _steady(r: dict) -> bool:
    return (r.get("stability") or {}).get("stable", True)


def _wrap(line: str) -> list[str]:
    import textwrap

    return textwrap.wrap(line, WIDTH, subsequent_indent="  ") or [""]


def format_table(result: dict) -> str:
    """The terminal table (at most WIDTH columns): one row per run with medians, throughput and the speedup over
    the baseline; one row per artifact with size, peak RSS and accuracy. A value whose timing was unstable is
    marked ``~`` (and the run's warning line says why); every other number is in --json."""
    m, c = result["machine"], result["config"]
    lines = _wrap(f"machine: {m['cpu']}, {m['cores']} cores, {' '.join(m['isa']) or '-'}; {m['date']}")
    lines += _wrap(f"threads {c['threads']}; {c['rounds']} interleaved rounds x {c['seconds_per_round']} s per measurement; "
                   "speedup = baseline p50 / p50 (same mode, batch)")
    head = f"{'artifact':<24} {'backend':<11} {'prec':<4} {'mode':<13} {'batch':>5} {'p50 ms':>8} {'p90 ms':>8} " \
           f"{'items/s':>8} {'speedup':>9}"
    lines += [head, "-" * len(head)]
    for r in sorted(result["runs"], key=lambda r: (r["mode"], r["batch"], r.get("streams") or 0, not r["baseline"], r["p50_ms"])):
        t = "" if _steady(r) else "~"
        sp = stats.mark(r.get("speedup_vs_baseline"), r.get("speedup_stable") is not False)
        lines.append(f"{_fit(_name(r), 24):<24} {r['backend']:<11} {r['precision']:<4} {_fit(_mode(r), 13):<13} {r['batch']:>5} "
                     f"{t + _ms(r['p50_ms']):>8} {t + _ms(r['p90_ms']):>8} {r['throughput']:>8.1f} {sp:>9}")
    seen, per = set(), []
    for r in result["runs"]:
        k = (_name(r), r["backend"], r["precision"])
        if k not in seen:
            seen.add(k)
            per.append(r)
    head2 = f"{'artifact':<24} {'backend':<11} {'prec':<4} {'size MB':>8} {'RSS MB':>7}  top-1"
    lines += ["", head2, "-" * len(head2)]
    for r in per:
        rss = max(x["peak_rss_mb"] for x in result["runs"] if (_name(x), x["backend"], x["precision"]) == (_name(r), r["backend"], r["precision"]))
        top1 = " ".join(f"{h} {v:.4f}" for h, v in r["metrics"].items()) or "-"
        row = f"{_fit(_name(r), 24):<24} {r['backend']:<11} {r['precision']:<4} {r['size_mb']:>8.3f} {rss:>7.0f}  {top1}"
        lines.append(row if len(row) <= WIDTH else row[:WIDTH - 1] + "…")
    lines.append("torch eager (reference): the original model in PyTorch eager fp32 under no_grad (the baseline)")
    if any(not _steady(r) or r.get("speedup_stable") is False for r in result["runs"]):
        lines += _wrap("~: unstable timing (wide tail or drifting rounds, see the warning); p99, intervals and "
                       "stability details: --json")
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
           + (f" Command: `{c['command']}`." if c.get("command") else "")
           + (f" **{(result.get('stability') or {})['warning']}**" if (result.get("stability") or {}).get("warning") else ""), "",
           "| artifact | backend | precision | mode | batch | p50 ms | p90 ms | p99 ms | speedup | size MB | "
           + " | ".join(f"top-1 {h}" for h in heads) + " |",
           "|---|---|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(heads)]
    for r in sorted(result["runs"], key=lambda r: (r["mode"], r["batch"], r.get("streams") or 0, not r["baseline"], r["p50_ms"])):
        sp = stats.mark(r.get("speedup_vs_baseline"), r.get("speedup_stable") is not False)
        t = "" if _steady(r) else "~"
        top = " | ".join(f"{r['metrics'][h]:.4f}" if h in r.get("metrics", {}) else "-" for h in heads)
        out.append(f"| {_name(r)} | {r['backend']} | {r['precision']} | {_mode(r)} | "
                   f"{r['batch']} | {t}{r['p50_ms']:.3f} | {t}{r['p90_ms']:.3f} | {t}{r['p99_ms']:.3f} | {sp} | {r['size_mb']:.3f} | {top} |")
    e2e = [r for r in result["runs"] if r.get("stages_ms") and r["mode"] == "end_to_end"]
    if e2e:
        out += ["", f"end_to_end per video frame at {e2e[0].get('fps', 30):g} fps, stage medians (ms):", "",
                "| artifact | backend | precision | " + " | ".join(stages) + " | total p50 | x model p50 |",
                "|---|---|---|" + "---:|" * (len(stages) + 2)]
        for r in e2e:
            ratio = stats.mark(r.get("over_model"), _steady(r))
            out.append(f"| {_name(r)} | {r['backend']} | {r['precision']} | "
                       + " | ".join(f"{r['stages_ms'][s]['p50']:.3f}" if s in r["stages_ms"] else "-" for s in stages)
                       + f" | {r['p50_ms']:.3f} | {ratio} |")
        out += ["", "x model p50: end_to_end p50 / the p50 of the model stage in the same frames (each frame's time "
                "contains its model call, so it is at least 1x); ~: an unstable timing."]
    return "\n".join(out + _stream_lines(result)) + "\n"


def write_markdown(result: dict, path: str | Path) -> None:
    Path(path).write_text(format_markdown(result))


PLOT_FORMATS = (".png", ".svg", ".pdf")
COLOURS = {"int8": "#2a7", "fp16": "#57c", "fp32": "#c74"}
BASELINE_COLOUR = "#888"


def _facet(r: dict) -> str:
    """The panel a run belongs to: runs are compared only within one mode and batch (or frame rate, or streams)."""
    if r["mode"] == "stream":
        return f"stream at {r['fps']:g} fps (capture to result)"
    if r["mode"] == "throughput":
        return f"throughput, {r.get('streams')} concurrent streams (per call)"
    return f"{r['mode']}, batch {r['batch']}"


def _label(r: dict) -> str:
    unsteady = "" if _steady(r) else " ~"
    if r["baseline"]:
        return BASELINE_NAME + unsteady
    return f"{r['backend']} {r['precision']} ({r['artifact']}){unsteady}"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both counts (lower latency and higher accuracy), by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_figure(result: dict):
    """The figure ``--plot`` writes: one panel per mode and batch (horizontal bars of p50 on a log axis, p90 and p99
    marks, the value at each bar's end; the baseline named "torch eager (reference)"), then accuracy vs model latency
    at batch 1 with the Pareto front. Returns the matplotlib Figure."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgemmError("--plot needs matplotlib (an edgemm dependency that is missing here): pip install matplotlib") from None
    facets: dict[str, list[dict]] = {}
    for r in sorted(result["runs"], key=lambda r: (r["mode"] != "model", r["mode"], r["batch"], r.get("fps") or 0,
                                                   r.get("streams") or 0)):
        facets.setdefault(_facet(r), []).append(r)
    heads = _heads(result)
    accuracy = [r for r in result["runs"] if r["mode"] == "model" and r["batch"] == 1 and heads and heads[0] in r.get("metrics", {})]
    rows = [max(2, len(v)) for v in facets.values()] + ([6] if accuracy else [])
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.2 + sum(0.38 * n + 1.0 for n in rows)),
                             gridspec_kw={"height_ratios": rows}, squeeze=False)
    axes = [a for row in axes for a in row]
    for ax, (title, runs) in zip(axes, facets.items()):
        runs = sorted(runs, key=lambda r: r["p50_ms"])
        y = list(range(len(runs)))
        colours = [BASELINE_COLOUR if r["baseline"] else COLOURS.get(r["precision"], "#999") for r in runs]
        ax.barh(y, [r["p50_ms"] for r in runs], color=colours, height=0.6)
        ax.hlines(y, [r["p50_ms"] for r in runs], [r["p90_ms"] for r in runs], color="k", linewidth=1, label="p50 to p90")
        ax.scatter([r["p99_ms"] for r in runs], y, marker="x", color="k", s=20, zorder=3, label="p99")
        for yi, r in zip(y, runs):
            ax.annotate(f"{r['p50_ms']:.3g} ms", (r["p50_ms"], yi), xytext=(3, 6), textcoords="offset points", fontsize=7)
        ax.set_xscale("log")
        ax.set_yticks(y, [_label(r) for r in runs], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel("latency, ms (log scale; bar: p50)", fontsize=8)
        ax.grid(axis="x", which="both", alpha=0.3)
    if accuracy:
        ax = axes[len(facets)]
        h = heads[0]
        pts = [(r["p50_ms"], r["metrics"][h]) for r in accuracy]
        for r, (x, v) in zip(accuracy, pts):
            ax.scatter(x, v, s=36, color=BASELINE_COLOUR if r["baseline"] else COLOURS.get(r["precision"], "#999"), zorder=3)
        front = pareto_front(pts)
        ax.step([pts[i][0] for i in front], [pts[i][1] for i in front], where="post", color="#333", linewidth=1,
                label="Pareto front (faster and more accurate than any point to its right)")
        for n, i in enumerate(front):  # names on the front only, alternating above and below: they do not collide
            ax.annotate(_label(accuracy[i]), pts[i], xytext=(4, 6 if n % 2 == 0 else -11), textcoords="offset points", fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("model latency p50, ms (batch 1, log scale)", fontsize=8)
        ax.set_ylabel(f"top-1 ({h})", fontsize=8)
        ax.set_title(f"accuracy vs latency ({h})", fontsize=9, loc="left")
        ax.grid(which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=7)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    keys = [Patch(color=BASELINE_COLOUR, label=BASELINE_NAME)] + \
        [Patch(color=col, label=p) for p, col in COLOURS.items() if any(r["precision"] == p and not r["baseline"] for r in result["runs"])] + \
        [Line2D([], [], color="k", linewidth=1, label="p50 to p90"), Line2D([], [], color="k", marker="x", linestyle="", label="p99")]
    m, c = result["machine"], result["config"]
    fig.legend(handles=keys, loc="upper center", ncol=len(keys), fontsize=7, frameon=False, bbox_to_anchor=(0.5, 1 - 0.45 / fig.get_figheight()))
    fig.suptitle(f"edgemm bench: {m['cpu']}, {c['threads']} threads, {c['rounds']} interleaved rounds, {m['date']}"
                 + ("  (~: unstable timing)" if any(not _steady(r) for r in result["runs"]) else ""), fontsize=9,
                 y=1 - 0.1 / fig.get_figheight(), va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / fig.get_figheight()))
    return fig


def write_plot(result: dict, path: str | Path) -> None:
    """``plot_figure`` written to ``path`` (format from the extension: .png, .svg or .pdf)."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_FORMATS:
        raise EdgemmError(f"--plot {path}: use a .png, .svg or .pdf file name")
    fig = plot_figure(result)
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path)
    finally:
        plt.close(fig)
