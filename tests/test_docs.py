"""The documentation: the README's contract (length, the two commands CI runs), the mkdocs site builds strictly,
every relative link resolves, no dated lab-notebook prose, and benchmarks/README.md renders from every results file."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
RENDER = ROOT / "scripts" / "render_bench_readme.py"
TOP = 40  # "near the top": the two commands sit within the README's first lines

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _markdown_files() -> list[Path]:
    files = [README, ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md"]
    files += sorted(DOCS.rglob("*.md"))
    return [f for f in files if f.exists()]


def _prose_lines(path: Path):
    """(line number, text) of the lines outside fenced code blocks, inline code removed."""
    in_fence = False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield n, INLINE_CODE.sub("", line)


def _slug(heading: str) -> str:
    # What mkdocs' toc extension and GitHub both make of a heading (for the headings these files use).
    text = re.sub(r"`|\*\*?|(?<!\w)_(?=\w)|(?<=\w)_(?!\w)", "", heading)  # emphasis underscores, not snake_case
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\s-]", "", text.lower()).strip()
    return re.sub(r"[\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(2)) for _, line in _prose_lines(path) if (m := HEADING.match(line))}


def _ci_test_command() -> str:
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [ln for ln in lines if "pytest" in ln and not ln.startswith("#")]
    assert len(commands) == 1, f".ci/run should hold one test command line, found {commands}"
    return commands[0]


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= 200, f"README.md has {n} lines; keep it at most 200 (details belong in docs/)"


def test_readme_has_the_two_commands_near_the_top_as_ci_runs_them():
    top = [ln.strip() for ln in README.read_text().splitlines()[:TOP]]
    ci = _ci_test_command()
    assert ci in top, f"README's first {TOP} lines must hold .ci/run's test command verbatim:\n{ci}"
    main = [ln for ln in top if ln.startswith("python3 -m venv .venv") and "edgemm export" in ln]
    assert len(main) == 1, f"README's first {TOP} lines must hold the one-line main-job command"
    for step in ("edgemm export export/avnet.toml --int8", "edgemm verify", "edgemm bench"):
        assert step in main[0], f"the main-job command lost its step {step!r}: {main[0]}"
    # Both are set-up-and-run commands from a clean clone: a venv, torch pinned to the CPU build.
    for cmd in (main[0], ci):
        assert "pip install" in cmd and "torch==" in cmd, cmd


def test_every_relative_link_resolves():
    broken = []
    for path in _markdown_files():
        for n, line in _prose_lines(path):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                dest = (path.parent / file_part).resolve() if file_part else path
                where = f"{path.relative_to(ROOT)}:{n}: {target}"
                if not dest.exists():
                    broken.append(f"{where} (no such file)")
                elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                    broken.append(f"{where} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_link_check_sees_a_broken_link(tmp_path):
    # The checker above must be able to fail: the same parsing on a page with a dead link and a dead anchor.
    page = tmp_path / "p.md"
    (tmp_path / "q.md").write_text("# Real heading\n")
    page.write_text("[a](missing.md) [b](q.md#real-heading) [c](q.md#nope)\n```\n[d](in-code.md)\n```\n")
    found = [t for _, line in _prose_lines(page) for t in LINK.findall(line)]
    assert found == ["missing.md", "q.md#real-heading", "q.md#nope"]
    assert _anchors(tmp_path / "q.md") == {"real-heading"}


def test_no_dated_lab_notebook_prose():
    pattern = re.compile(r"this VM|slower spell")
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
            for p in [README, *sorted(DOCS.rglob("*"))] if p.is_file() and p.suffix in (".md", ".yml", ".html", "")
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if pattern.search(line)]
    assert not hits, "dated lab-notebook prose (results go to benchmarks/results with their command):\n" + "\n".join(hits)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
                    reason="mkdocs / mkdocstrings not installed: pip install -e '.[docs]'")
def test_mkdocs_builds_strictly(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    api = (site / "api" / "index.html").read_text()
    # The API reference comes from the docstrings (mkdocstrings), not from text written into the page.
    for name in ("edgemm.configure.export", "edgemm.runtime.runtime.load", "edgemm.runtime.runtime.Runtime",
                 "edgemm.runtime.stream.Stream", "edgemm.bundle.Bundle", "edgemm.errors.EdgemmError"):
        assert f'id="{name}"' in api, f"the API page has no entry for {name}"
    assert 'id="edgemm.stages.options.quantize.QuantizeOptions"' in (site / "options" / "index.html").read_text()
    assert (site / "search" / "search_index.json").exists()


def _render(results: Path, out: Path) -> str:
    proc = subprocess.run([sys.executable, str(RENDER), "--results", str(results), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out.read_text()


def test_bench_readme_renders_a_section_per_results_file(tmp_path):
    text = _render(RESULTS, tmp_path / "README.md")
    stems = sorted(p.stem for p in RESULTS.glob("*.json"))
    assert stems, "benchmarks/results holds no results files"
    headings = set(re.findall(r"^## (.+)$", text, flags=re.M))
    missing = [s for s in stems if s not in headings]
    assert not missing, f"results files without a section: {missing}"
    # A bench JSON becomes a table of its runs, with the command that produced it when the file records one.
    section = text.split("## bench-avnet-2026-11-30", 1)[1].split("\n## ", 1)[0]
    assert "| artifact |" in section and "p50_ms" in section and "edgemm bench build/avnet-fp32" in section


def test_bench_readme_takes_results_files_of_any_shape(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "new-kind-2027-01-01.json").write_text(json.dumps({"what": "a new script", "numbers": {"x_ms": 1.5}}))
    (results / "rows-2027-01-02.json").write_text(json.dumps([{"name": "a", "p50_ms": 0.5}, {"name": "b", "p50_ms": 0.7}]))
    (results / "broken-2027-01-03.json").write_text("{not json")
    text = _render(results, tmp_path / "README.md")
    for stem in ("new-kind-2027-01-01", "rows-2027-01-02", "broken-2027-01-03"):
        assert f"## {stem}" in text
    assert "| numbers.x_ms | 1.5 |" in text
    assert "| a | 0.5 |" in text
    assert "could not be read" in text
