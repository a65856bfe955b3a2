"""`edgemm backends`: what this machine can run, and why not."""
from __future__ import annotations

import json

ORDER = 40


def cmd_backends(args) -> int:
    from ...backends.registry import all_backends
    from ...plugins import entry_point_values
    from ...stages.quantize.registry import broken_quantizers
    from ...stages.registry import broken_stages

    plugins = entry_point_values("edgemm.backends")  # read from metadata; one malformed package breaks only itself
    rows = []
    for name, backend in all_backends().items():
        av = backend.availability()
        rows.append({"name": name, "available": av.available, "version": av.version, "devices": list(av.devices),
                     "reason": av.reason, "install": av.install, "description": backend.description,
                     "declares": backend.declaration()})
    broken = [{"kind": "quantizer", "name": n, "reason": b.reason} for n, b in broken_quantizers().items()]
    broken += [{"kind": "stage", "name": n, "reason": why} for n, why in broken_stages().items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if r["name"] in plugins:
            r["description"] += f" [plugin: {plugins[r['name']]}]"
        if r["available"]:
            print(f"{r['name']:<12} available    {r['version']:<12} {r['description']}; devices: {', '.join(r['devices']) or '-'}")
        else:
            print(f"{r['name']:<12} unavailable  {r['version'] or '-':<12} {r['reason']}; install: {r['install']}")
    for r in broken:  # other plugins that failed to load: listed, never fatal
        print(f"broken {r['kind']} plugin {r['name']}: {r['reason']}")
    return 0


def register(sub) -> None:
    b = sub.add_parser("backends", help="which backends this machine can use, and why not")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_backends)
