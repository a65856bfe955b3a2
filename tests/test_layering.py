"""Layering of edgemm's own modules: no import cycles between files nor between folders (imports inside
functions count too) and no private names imported across modules. A cycle or a reach into another
module's privates fails here with the imports that form it."""
from __future__ import annotations

import ast
from pathlib import Path

import edgemm

ROOT = Path(edgemm.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(mods: dict[str, Path]):
    """(importer, imported module, names) for every import of an edgemm module, at any depth of the file."""
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "edgemm":
                        yield mod, a.name, []
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(mod, is_package, node.level, node.module) if node.level else node.module
                if not target or target.split(".")[0] != "edgemm":
                    continue
                names = [a.name for a in node.names]
                subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in mods]
                rest = [n for n in names if f"{target}.{n}" not in mods]
                for s in subs:
                    yield mod, s, []
                if rest or not subs:
                    yield mod, target, rest


def _graph():
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for a, b, _ in _imports(mods):
        if b in mods and b != a:
            graph[a].add(b)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _folder(module: str, path: Path) -> str:
    """The folder a module counts in: its package. A package (``__init__.py``) is its own folder, so a
    sub-package (edgemm.runtime, edgemm.frontends.native, edgemm.stages.quantize, each of edgemm.backends.*)
    is a folder apart from its parent. A module directly under edgemm/ is its own node: the top level
    holds both the ground floor every folder uses (errors, iospec, log) and the top that uses every
    folder (pipeline, recipe), so one "root folder" would tie every folder to every other."""
    if path.name == "__init__.py":
        return module
    parent = module.rsplit(".", 1)[0]
    return module if parent == "edgemm" else parent


def _folder_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], list[str]]]:
    """Folder -> folders it imports, and for each folder edge the module imports behind it."""
    mods = _modules()
    graph: dict[str, set[str]] = {_folder(m, p): set() for m, p in mods.items()}
    why: dict[tuple[str, str], list[str]] = {}
    for a, b, _ in _imports(mods):
        fa, fb = _folder(a, mods[a]), _folder(b, mods[b]) if b in mods else None
        if fb is not None and fa != fb:
            graph[fa].add(fb)
            if f"{a} -> {b}" not in why.setdefault((fa, fb), []):
                why[(fa, fb)].append(f"{a} -> {b}")
    return graph, why


def _describe(cycle: list[str], why: dict[tuple[str, str], list[str]]) -> str:
    members = set(cycle)
    edges = [f"{fa} -> {fb} ({', '.join(imports)})" for (fa, fb), imports in sorted(why.items())
             if fa in members and fb in members]
    return " <-> ".join(cycle) + ": " + "; ".join(edges)




def test_the_checker_finds_a_cycle_and_resolves_relative_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _resolve("edgemm.stages.verify", False, 2, "compare") == "edgemm.compare"
    assert _resolve("edgemm.stages", True, 1, "export") == "edgemm.stages.export"
    graph = _graph()
    assert "edgemm.compare" in graph["edgemm.stages.verify"]  # function-level and relative imports are seen


def test_no_import_cycles_between_edgemm_modules():
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_folders_collapse_to_packages_and_cycles_name_their_imports():
    mods = _modules()
    assert _folder("edgemm.data.datasets", mods["edgemm.data.datasets"]) == "edgemm.data"
    assert _folder("edgemm.frontends.native", mods["edgemm.frontends.native"]) == "edgemm.frontends.native"
    assert _folder("edgemm.stages.quantize.ptq", mods["edgemm.stages.quantize.ptq"]) == "edgemm.stages.quantize"
    assert _folder("edgemm.iospec", mods["edgemm.iospec"]) == "edgemm.iospec"
    graph, why = _folder_graph()
    assert "edgemm.frontends" in graph["edgemm.frontends.native"]  # native builds on the numpy references
    assert "edgemm.frontends.native" in graph["edgemm.data"]
    assert _describe(["a", "b"], {("a", "b"): ["a.x -> b.y"], ("b", "a"): ["b.z -> a.w"], ("a", "c"): ["a -> c"]}) == \
        "a <-> b: a -> b (a.x -> b.y); b -> a (b.z -> a.w)"


def test_no_import_cycles_between_edgemm_folders():
    graph, why = _folder_graph()
    cycles = _cycles(graph)
    assert cycles == [], "import cycles between folders: " + " | ".join(_describe(c, why) for c in cycles)


def test_no_private_names_imported_across_modules():
    mods = _modules()
    bad = [f"{a} imports {n} from {b}" for a, b, names in _imports(mods) for n in names
           if n.startswith("_") and not n.startswith("__") and b != a]
    assert bad == []
