"""Verify only what was just added to a bundle (``edgemm compile``): the new artifacts are checked and timed,
every other row of the bundle's reports stays as its last verification wrote it.

Re-verifying a whole bundle after adding one artifact re-times every artifact (tens of seconds for a
fraction of a second of compiling); the other artifacts have not changed, so their rows still hold.
"""
from __future__ import annotations

import copy
import os
from typing import Iterable

from ..bundle import Bundle


def _view(bundle: Bundle, keep: set[tuple[str, str]]) -> Bundle:
    """The bundle with only the artifacts ``keep`` ((path, backend) pairs) listed: what verify then checks and times.
    The torch reference stays listed only where verify needs it (no stored reference outputs)."""
    m = copy.deepcopy(bundle.manifest)
    graphs_without_outputs = {g for g in bundle.graphs() if not bundle.graph(g).parity.get("reference_outputs")}
    m["artifacts"] = [a for a in m["artifacts"] if (a["path"], a["backend"]) in keep
                      or (a.get("graph", "main") in graphs_without_outputs and a["format"] == "torch-export")]
    return Bundle(bundle.root, m)


def verify_added(bundle_dir: str | os.PathLike, added: Iterable[tuple[str, str]], *, threads: int | None = None):
    """Verify and time the artifacts ``added`` ((path, backend) pairs) of the bundle at ``bundle_dir``; merge their rows
    into reports/parity.json, accuracy.json and latency.json (rows of the same artifacts are replaced). Raises on a
    parity breach of an added artifact (after the reports are written). -> the VerifyResult of the added ones."""
    from .verify import verify

    bundle = Bundle.open(bundle_dir)
    keep = set(added)
    if not keep:
        return None
    view = _view(bundle, keep)
    graphs = sorted({a.graph for a in view.artifacts if (a.path, a.backend) in keep})
    result = verify(view, threads=threads, write=False, graph=graphs[0] if len(graphs) == 1 else None)
    full_id = {view.artifact_id(a): bundle.artifact_id(a) for a in view.artifacts}
    bundle.write_reports(_merged(bundle, result, full_id))
    result.raise_on_breach()
    return result


def _merged(bundle: Bundle, result, full_id: dict[str, str]) -> dict[str, dict]:
    """The bundle's reports with the rows of ``result`` (ids mapped to the whole bundle's) in place of their old rows."""
    new = result.reports()
    out: dict[str, dict] = {}
    parity = bundle.report("parity")
    rows = {full_id.get(k, k): v for k, v in new["parity"]["artifacts"].items()}
    out["parity"] = {**parity, "artifacts": {**parity.get("artifacts", {}), **rows}} if parity else \
        {**new["parity"], "artifacts": rows}
    latency = bundle.report("latency")
    runs = [{**r, "artifact": full_id.get(r["artifact"], r["artifact"])} for r in new["latency"]["runs"]]
    timed = {r["artifact"] for r in runs}
    out["latency"] = {**latency, "runs": [r for r in latency.get("runs", []) if r.get("artifact") not in timed] + runs} \
        if latency else {**new["latency"], "runs": runs}
    added = {full_id.get(k, k): v for k, v in ((new["latency"].get("ranking") or {}).get("p50_ms") or {}).items()}
    if added:  # the same method (each artifact in its own process), at another time: the best this command has
        old = ((latency or {}).get("ranking") or {}).get("p50_ms") or {}
        out["latency"]["ranking"] = {**new["latency"]["ranking"], "p50_ms": {**old, **added}}
    if "accuracy" in new:
        accuracy = bundle.report("accuracy")
        rows = {full_id.get(k, k): v for k, v in new["accuracy"]["artifacts"].items()}
        if accuracy:
            out["accuracy"] = {**accuracy, "artifacts": {**accuracy.get("artifacts", {}), **rows},
                               "sensitivity": accuracy.get("sensitivity", []) + new["accuracy"].get("sensitivity", [])}
        else:
            out["accuracy"] = {**new["accuracy"], "artifacts": rows}
    return out


__all__ = ["verify_added"]
