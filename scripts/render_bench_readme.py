"""Render benchmarks/README.md from benchmarks/results/*.json: one section per results file.

    python scripts/render_bench_readme.py                 # writes benchmarks/README.md
    python scripts/render_bench_readme.py --out F         # elsewhere ('-': stdout)

Each section holds the file's title, date, machine, command and a compact table of its main
numbers. The results files were written by different scripts over time and share no schema, so
the table is found, not declared: a list of records (``runs``, ``rows``, ...) becomes one row per
record, anything else a key/value table of its scalar leaves. A new results file needs no change
here.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "benchmarks" / "README.md"

MAX_COLUMNS = 11
MAX_ROWS = 40
MAX_LEAVES = 24
MAX_TEXT = 90
# Columns worth showing first when a record has them (identity, then timing, then accuracy and size).
PREFERRED = ("name", "artifact", "backend", "target", "precision", "quantizer", "scheme", "part", "variant", "seed", "mode",
             "batch", "streams", "p50_ms", "p90_ms", "speedup_vs_baseline", "vs_fp32", "size_mb", "size_ratio", "top1",
             "agreement", "digit_drop", "digit", "drop_ort_fused", "drop_ort_emulated", "drop_openvino")
# Shown after the preferred columns and a record's metrics, when there is room.
LATER = ("p99_ms", "throughput", "peak_rss_mb")
# Keys described in the section's header lines, not repeated in its table.
HEADER_KEYS = {"date", "machine", "command", "commands", "what", "title", "issue", "plan", "notes", "note", "config",
               "cpu_flags", "versions", "bundle", "bundles", "tests", "report_files"}
# Leaves that describe how a run was set up rather than what it measured: left to the file.
SETUP_KEYS = {"request", "loadavg", "loadavg_start", "loadavg_end", "loadavg_after", "order", "format", "split",
              "command", "cpu_flags"}
# Leaves whose path names a result come first in a key/value table.
RESULT_WORDS = ("verdict", "speedup", "ratio", "_ms", "p50", "top1", "digit", "drop", "accuracy", "results", "pass",
                "cosine", "agreement", "per_frame", "quarters", "exit_code", "wall_s")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _text(value, limit: int = MAX_TEXT) -> str:
    s = " ".join(str(value).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return _text(", ".join(_cell(v) for v in value), 60).replace("|", "\\|")
    return _text(value, 60).replace("|", "\\|")


def _date(data: dict, stem: str) -> str:
    for value in (data.get("date"), (data.get("machine") or {}).get("date") if isinstance(data.get("machine"), dict) else None):
        if isinstance(value, str) and DATE.search(value):
            return DATE.search(value).group(0)
    found = DATE.search(stem)
    return found.group(0) if found else "not recorded"


def _machine(data: dict) -> str:
    m = data.get("machine")
    if isinstance(m, str):
        return _text(m, 200)
    if not isinstance(m, dict):
        return "not recorded"
    parts = []
    if m.get("cpu"):
        parts.append(str(m["cpu"]))
    if m.get("cores"):
        parts.append(f"{m['cores']} cores")
    isa = m.get("isa") or m.get("flags")
    if isinstance(isa, (list, tuple)) and isa:
        parts.append("ISA " + " ".join(map(str, isa)))
    elif isinstance(isa, str):
        parts.append("ISA " + isa)
    backends = m.get("backends")
    if isinstance(backends, dict):
        versions = [f"{k} {v}" for k, v in backends.items() if v]
        if versions:
            parts.append(", ".join(versions))
    load = m.get("loadavg")
    if isinstance(load, (list, tuple)) and load:
        parts.append("load " + " ".join(_cell(float(x)) for x in load[:3] if isinstance(x, (int, float))))
    for key in ("shared", "torch", "ray"):
        if m.get(key) not in (None, "", True, False):
            parts.append(f"{key} {_text(m[key], 60)}")
    return "; ".join(parts) or "not recorded"


def _command(data: dict) -> str | None:
    for where in (data, data.get("machine"), data.get("config")):
        if isinstance(where, dict) and isinstance(where.get("command"), str):
            return where["command"]
    commands = data.get("commands")
    if isinstance(commands, list) and commands:
        first = str(commands[0])
        return first + (f"  (+{len(commands) - 1} more in the file)" if len(commands) > 1 else "")
    return None


def _records(data: dict) -> tuple[str, list[dict]] | None:
    """The file's main list of records: ``runs`` / ``rows`` first, else the longest list of dicts."""
    candidates = [(k, v) for k, v in data.items()
                  if isinstance(v, list) and v and all(isinstance(r, dict) for r in v) and k not in HEADER_KEYS]
    for key in ("runs", "rows"):
        for k, v in candidates:
            if k == key:
                return k, v
    return max(candidates, key=lambda kv: len(kv[1])) if candidates else None


def _flat_record(record: dict) -> dict:
    """Scalars of a record, with one level of dicts (``metrics``) flattened to ``metrics.digit``."""
    out = {}
    for k, v in record.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                if isinstance(v2, (int, float, str, bool)) or v2 is None:
                    out[f"{k}.{k2}"] = v2
        elif isinstance(v, (int, float, str, bool)) or v is None or (isinstance(v, list) and len(v) <= 4):
            out[k] = v
    return out


def _columns(rows: list[dict]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        for k in r:
            if k not in seen:
                seen.append(k)
    # Long free text (notes, sources) and ids that repeat the artifact make a table unreadable.
    seen = [k for k in seen if k != "id" and not any(isinstance(r.get(k), str) and len(r[k]) > 60 for r in rows)]
    preferred = [k for k in PREFERRED if k in seen]
    metrics = [k for k in seen if k.startswith("metrics.")]
    later = [k for k in LATER if k in seen]
    rest = [k for k in seen if k not in preferred and k not in metrics and k not in later]
    return (preferred + metrics + later + rest)[:MAX_COLUMNS]


def _record_table(rows: list[dict]) -> list[str]:
    flat = [_flat_record(r) for r in rows]
    cols = _columns(flat)
    if not cols:
        return []
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in flat[:MAX_ROWS]:
        lines.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    if len(flat) > MAX_ROWS:
        lines.append(f"\n({len(flat) - MAX_ROWS} more rows in the file)")
    return lines


def _leaves(value, prefix: str = "", depth: int = 0):
    if isinstance(value, dict):
        if depth >= 3:
            return
        for k, v in value.items():
            if (depth == 0 and k in HEADER_KEYS) or k in SETUP_KEYS:
                continue
            yield from _leaves(v, f"{prefix}{k}.", depth + 1)
    elif isinstance(value, list):
        if value and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value) and len(value) <= 6:
            yield prefix.rstrip("."), value
    elif isinstance(value, (int, float, str, bool)) or value is None:
        yield prefix.rstrip("."), value


def _leaf_table(data: dict) -> list[str]:
    leaves = [(k, v) for k, v in _leaves(data) if not (isinstance(v, str) and len(v) > 60)]
    leaves.sort(key=lambda kv: not any(w in kv[0].lower() for w in RESULT_WORDS))  # stable: file order within each group
    if not leaves:
        return []
    lines = ["| key | value |", "|---|---|"]
    for k, v in leaves[:MAX_LEAVES]:
        lines.append(f"| {_cell(k)} | {_cell(v)} |")
    if len(leaves) > MAX_LEAVES:
        lines.append(f"\n({len(leaves) - MAX_LEAVES} more values in the file)")
    return lines


def section(path: Path) -> str:
    """The markdown section of one results file (heading: the file's stem)."""
    stem = path.stem
    lines = [f"## {stem}", ""]
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return "\n".join(lines + [f"`results/{path.name}` could not be read: {_text(exc, 200)}", ""])
    if not isinstance(data, dict):
        data = {"rows": data} if isinstance(data, list) else {"value": data}
    if isinstance(data.get("what"), str):
        lines += [_text(data["what"], 400), ""]
    lines.append(f"- file: [results/{path.name}](results/{path.name})")
    siblings = sorted(p.name for p in path.parent.glob(stem + ".*") if p.suffix != ".json")
    if siblings:
        lines.append("- beside it: " + ", ".join(f"[{n}](results/{n})" for n in siblings))
    lines.append(f"- date: {_date(data, stem)}")
    lines.append(f"- machine: {_machine(data)}")
    command = _command(data)
    lines.append(f"- command: `{_text(command, 300)}`" if command else "- command: not recorded")
    lines.append("")
    found = _records(data)
    table = _record_table(found[1]) if found else []
    if found and table:
        lines.append(f"`{found[0]}` ({len(found[1])}):")
        lines.append("")
    else:
        table = _leaf_table(data)
    lines += table
    lines.append("")
    return "\n".join(lines)


def render(results_dir: Path = RESULTS) -> str:
    files = sorted(results_dir.glob("*.json"))
    head = [
        "# Benchmark results",
        "",
        "<!-- Rendered by scripts/render_bench_readme.py from benchmarks/results/*.json: edit those, then re-render. -->",
        "",
        "Every file in `results/` was written by a script in this folder (or `edgemm bench --json`) and holds the",
        "machine and the command that produced it. The numbers are what one machine measured on one day: sub-millisecond",
        "latencies on a shared machine move between runs, so compare ratios from interleaved rounds of one run. How the",
        "measurements are made: `docs/benchmarking.md`.",
        "",
        f"{len(files)} results files:",
        "",
    ]
    head += [f"- [{p.stem}](#{p.stem.lower().replace('.', '')})" for p in files]
    head.append("")
    return "\n".join(head + [section(p) for p in files])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of results JSON files")
    ap.add_argument("--out", default=str(OUT), help="where to write the markdown ('-': stdout)")
    args = ap.parse_args(argv)
    if not args.results.is_dir():
        print(f"render_bench_readme: error: {args.results} is not a folder of results files", file=sys.stderr)
        return 2
    text = render(args.results)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
