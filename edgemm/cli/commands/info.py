"""`edgemm info`: human summary of a bundle."""
from __future__ import annotations

import json

ORDER = 30


def cmd_info(args) -> int:
    from ...bundle import Bundle, graph_entries
    from ...errors import BundleError

    b = Bundle.open(args.bundle, verify_hashes=not args.no_hash_check)
    if args.json:
        print(json.dumps(b.manifest, indent=2))
        return 0
    m = b.manifest
    print(f"bundle     {b.root}  (format {m['format_version']}, edgemm {m['edgemm_version']})")
    model = m["model"]
    print(f"model      {b.name}  from {model.get('source') or '?'}  sha256 {(model.get('sha256') or '?')[:16]}")
    multi = len(b.graphs()) > 1
    for g in b.graphs():
        spec, indent = b.specs[g], "  " if multi else ""
        if multi:
            print(f"graph {g}")
        print(f"{indent}inputs")
        for t in spec.inputs:
            pre = f"  preprocessing {json.dumps(t.to_dict('input')['preprocessing'])}" if t.preprocessing else ""
            print(f"{indent}  {t.name:<10} {t.modality:<7} {t.dtype:<8} {list(t.shape)}{pre}")
        for axis, r in spec.axes.items():
            print(f"{indent}  axis {axis}: {r.min}..{r.max} (opt {r.opt})")
        family = (graph_entries(m).get(g) or {}).get("family")
        if isinstance(family, dict):  # what a model family recorded (edgemm.families): its name and pre-processing notes
            print(f"{indent}  family {family.get('name', '?')}: " + json.dumps({k: v for k, v in family.items() if k != 'name'})[:300])
        print(f"{indent}outputs")
        for t in spec.outputs:
            labels = f"  labels {', '.join(t.labels)}" if t.labels else ""
            print(f"{indent}  {t.name:<10} {t.dtype:<8} {list(t.shape)}{labels}")
    print("artifacts")
    width = max([28, *(len(a.path) for a in b.artifacts)])
    for a in b.artifacts:
        size = a.size_bytes(b.root) / 1e6
        print(f"  {a.path:<{width}} {a.format:<13} {a.precision:<5} backend {a.backend:<12} {size:6.2f} MB  graph {a.graph}")
    for a in b.artifacts:  # the INT8 speed verdict measured at export (issue: never silently slower)
        speed = a.extra.get("speed") if isinstance(a.extra, dict) else None
        if a.precision == "int8" and isinstance(speed, dict) and speed.get("vs_fp32"):
            text = speed.get("text") or f"x{speed['vs_fp32']:.2f} vs fp32"
            pick = "; edgemm.load prefers another artifact" if speed.get("slower") else ""
            print(f"  int8 speed {a.path}: {text} at batch {speed.get('batch', 1)}, measured by "
                  f"{speed.get('measured_by', 'export')}{pick}")
    cal = m["calibration"]
    print(f"calibration {cal.get('source') or 'none'} ({cal.get('samples', 0)} samples, method {cal.get('method')})")
    print("reports    " + (", ".join(f"{k}: {v}" for k, v in m["reports"].items()) or "none (run `edgemm verify`)"))
    acc = b.report("accuracy")
    if acc:
        try:
            ref = acc["reference"]["metrics"]
            print("accuracy   reference " + "  ".join(f"{h} {_num(v)}" for h, v in ref.items()) + f"  ({acc['samples']} eval samples)")
            for aid, a in acc["artifacts"].items():
                print(f"           {aid}: " + "  ".join(f"{h} {_num(v)}" for h, v in a["metrics"].items()))
        except (KeyError, TypeError, AttributeError) as exc:
            raise BundleError(f"report {b.report_path('accuracy')} is malformed ({type(exc).__name__}: {exc}); "
                              f"run `edgemm verify {b.root}` to rewrite it") from exc
    pruning = b.report("pruning")
    if pruning:
        from ...stages.prune.report import pruning_summary

        for line in pruning_summary(pruning):
            print(line)
    return 0


def _num(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "n/a"


def register(sub) -> None:
    i = sub.add_parser("info", help="human summary of a bundle's manifest")
    i.add_argument("bundle", metavar="BUNDLE_DIR")
    i.add_argument("--json", action="store_true", help="print manifest.json")
    i.add_argument("--no-hash-check", action="store_true", help="skip the sha256 check of artifact files")
    i.set_defaults(func=cmd_info)
