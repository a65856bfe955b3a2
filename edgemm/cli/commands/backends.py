"""`edgemm backends`: what this machine can run, and why not."""
from __future__ import annotations

import json

ORDER = 40


def cmd_backends(args) -> int:
    from importlib.metadata import entry_points

    from ...backends.registry import all_backends

    plugins = {ep.name: ep.value for ep in entry_points(group="edgemm.backends")}
    rows = []
    for name, backend in all_backends().items():
        av = backend.availability()
        rows.append({"name": name, "available": av.available, "version": av.version, "devices": list(av.devices),
                     "reason": av.reason, "install": av.install, "description": backend.description,
                     "declares": backend.declaration()})
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
    return 0


def register(sub) -> None:
    b = sub.add_parser("backends", help="which backends this machine can use, and why not")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_backends)
