"""``edgemm bench --decide``: the int8-vs-fp32 verdicts re-made on the deployment machine, recorded in the bundle.

The export measured its verdict on the export machine; the machine that runs the bundle may differ
(another CPU, other load). ``benchmark(..., decide=True)`` re-makes each verdict from its own paired
rounds (``edgemm.bench.run._decisions``); this module writes them into the manifest's ``speed`` of
each int8 artifact (``slower`` keeps its meaning: slower than fp32 with confidence, beyond the
tolerance; ``edgemm.load`` follows it) and into ``reports/speed.json`` under ``decided``, as one
update under the bundle's writer lock.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone

from ..bundle import Bundle


def record(bundle_dir: str | os.PathLike | Bundle, decisions: list[dict], machine: dict | None = None) -> Bundle:
    """Write ``decisions`` (from ``benchmark(..., decide=True)["decisions"]``) into the bundle; returns it re-read."""
    root = bundle_dir.root if isinstance(bundle_dir, Bundle) else bundle_dir
    bundle = Bundle.open(root, verify_hashes=False)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    where = {k: (machine or {}).get(k) for k in ("cpu", "cores", "isa", "loadavg") if machine and k in machine}
    with bundle.update() as u:
        arts = u.bundle.artifacts
        for d in decisions:
            for a in arts:
                if u.bundle.artifact_id(a) == d["id"] and a.backend == d["backend"]:
                    old = a.extra.get("speed") if isinstance(a.extra.get("speed"), dict) else {}
                    a.extra = {**a.extra, "speed": {**{k: v for k, v in old.items() if k not in ("machine", "note")},
                                                    **{k: v for k, v in d.items() if k not in ("id", "graph", "fp32")},
                                                    "decided": stamp, "machine": where}}
        u.set_artifacts(arts)
        speed = dict(u.bundle.report("speed") or {}) if u.bundle.manifest["reports"].get("speed") else {}
        speed["decided"] = {"date": stamp, "machine": where, "decisions": decisions}
        u.write_report("speed", speed)
    return Bundle.open(root, verify_hashes=False)


def lines(decisions: list[dict]) -> list[str]:
    """What ``edgemm bench --decide`` prints: one line per int8 artifact, from the same rounds as the table above."""
    if not decisions:
        return ["--decide: no int8 artifact with an fp32 sibling was timed in model mode at its batch here; "
                "include --modes model and that --batch"]
    out = []
    for d in decisions:
        pick = f"edgemm.load prefers {d['fp32']} to it" if d["slower"] else "edgemm.load ranks it first of the two"
        out.append(f"decided here: {d['id']} ({d['backend']}, batch {d['batch']}): {d['text']} "
                   f"(x{d['vs_fp32']:.2f} = {d['int8_ms']:.3f} / {d['fp32_ms']:.3f} ms p50); recorded, {pick}"
                   + ("" if d["stable"] else "; timings unstable (~): rerun on a quiet machine to be sure"))
    return out
