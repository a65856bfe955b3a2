"""``edgemm`` command line: a thin layer over the Python API.

User errors (EdgemmError) print one line ``edgemm: error: ...`` and exit with code 2; anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import EdgemmError, UnsupportedFeature
from .log import set_verbosity


def _targets(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def cmd_export(args) -> int:
    from .stages.export import export

    bundle = export(
        args.model, output=args.output, int8=args.int8, qat=args.qat, prune=args.prune,
        targets=args.target, calibration=args.calib, evaluation=args.eval, opset=args.opset,
        exporter=args.exporter, verify=not args.no_verify, threads=args.threads,
    )
    result = getattr(bundle, "last_verify", None)
    print(f"bundle: {bundle.root}  ({len(bundle.artifacts)} artifacts; `edgemm info {args.output}` for details)")
    if result is not None:
        print(result.summary())
    return 0


def cmd_verify(args) -> int:
    from .stages.verify import verify

    result = verify(args.bundle, evaluation=args.eval, threads=args.threads)
    print(result.summary())
    print(f"reports written to {Path(args.bundle) / 'reports'}")
    return 0


def cmd_info(args) -> int:
    from .bundle import Bundle

    b = Bundle.open(args.bundle, verify_hashes=not args.no_hash_check)
    if args.json:
        print(json.dumps(b.manifest, indent=2))
        return 0
    m = b.manifest
    print(f"bundle     {b.root}  (format {m['format_version']}, edgemm {m['edgemm_version']})")
    print(f"model      {m['model']['name']}  from {m['model']['source']}  sha256 {m['model']['sha256'][:16]}")
    print("inputs")
    for t in b.spec.inputs:
        pre = f"  preprocessing {json.dumps(t.to_dict('input')['preprocessing'])}" if t.preprocessing else ""
        print(f"  {t.name:<10} {t.modality:<7} {t.dtype:<8} {list(t.shape)}{pre}")
    print("outputs")
    for t in b.spec.outputs:
        labels = f"  labels {', '.join(t.labels)}" if t.labels else ""
        print(f"  {t.name:<10} {t.dtype:<8} {list(t.shape)}{labels}")
    print("artifacts")
    for a in b.artifacts:
        size = a.size_bytes(b.root) / 1e6
        print(f"  {a.path:<28} {a.format:<13} {a.precision:<5} backend {a.backend:<12} {size:6.2f} MB  graph {a.graph}")
    cal = m["calibration"]
    print(f"calibration {cal['source'] or 'none'} ({cal['samples']} samples, method {cal['method']})")
    print("reports    " + (", ".join(f"{k}: {v}" for k, v in m["reports"].items()) or "none (run `edgemm verify`)"))
    acc = b.report("accuracy")
    if acc:
        ref = acc["reference"]["metrics"]
        print("accuracy   reference " + "  ".join(f"{h} {v:.4f}" for h, v in ref.items()) + f"  ({acc['samples']} eval samples)")
        for aid, a in acc["artifacts"].items():
            print(f"           {aid}: " + "  ".join(f"{h} {v:.4f}" for h, v in a["metrics"].items()))
    return 0


def cmd_backends(args) -> int:
    from .backends.registry import all_backends

    rows = []
    for name, backend in all_backends().items():
        av = backend.availability()
        rows.append({"name": name, "available": av.available, "version": av.version, "devices": list(av.devices),
                     "reason": av.reason, "install": av.install, "description": backend.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if r["available"]:
            print(f"{r['name']:<12} available    {r['version']:<12} {r['description']}; devices: {', '.join(r['devices']) or '-'}")
        else:
            print(f"{r['name']:<12} unavailable  {r['version'] or '-':<12} {r['reason']}; install: {r['install']}")
    return 0


def _waiting(capability: str):
    def run(args) -> int:
        raise UnsupportedFeature(f"`edgemm {args.command}` ({capability}) is not in edgemm {__version__} yet; "
                                 "today: export, verify, info, backends")
    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgemm", description="Take trained multimodal PyTorch models to the edge: export, verify, run.")
    p.add_argument("--version", action="version", version=f"edgemm {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug output (exporter logs)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    e = sub.add_parser("export", help="export a model to a verified bundle",
                       description="Export a recipe (.toml) or torch.export program (.pt2) to a bundle: torch reference, fp32 ONNX, "
                                   "per-target artifacts (OpenVINO IR fp32/fp16), parity + accuracy + latency reports.",
                       epilog="example: edgemm export export/avnet.toml -o build/avnet")
    e.add_argument("model", metavar="RECIPE_OR_MODEL", help="recipe .toml or torch.export .pt2 file")
    e.add_argument("-o", "--output", required=True, metavar="BUNDLE_DIR", help="bundle directory (replaced if it is a bundle)")
    e.add_argument("--target", type=_targets, default=None, metavar="T1,T2", help="onnxruntime,openvino,tensorrt (default: the recipe's)")
    e.add_argument("--eval", default=None, metavar="NPZ", help="labelled evaluation data (default: the recipe's [data] evaluation)")
    e.add_argument("--calib", default=None, metavar="DIR", help="calibration data for --int8")
    e.add_argument("--int8", action="store_true", help="INT8 post-training quantization")
    e.add_argument("--qat", action="store_true", help="quantization-aware training")
    e.add_argument("--prune", type=float, default=None, metavar="RATIO", help="structured channel pruning ratio")
    e.add_argument("--max-drop", default=None, metavar="DROP", help="accuracy budget for --int8, e.g. 0.01 or 2%%")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    e.add_argument("--exporter", choices=("dynamo", "legacy"), default=None, help="ONNX exporter (default dynamo, legacy on failure)")
    e.add_argument("--threads", type=int, default=None, help="threads for verification and timing (default min(4, cores))")
    e.add_argument("--no-verify", action="store_true", help="skip parity/accuracy checks (not recommended)")
    e.set_defaults(func=cmd_export)

    v = sub.add_parser("verify", help="parity + task accuracy of every artifact vs the fp32 reference",
                       description="Re-run parity (max-abs, mean-abs, cosine per output) and top-1 per head for every artifact; "
                                   "rewrite reports/*.json. Exit 2 on a parity breach.")
    v.add_argument("bundle", metavar="BUNDLE_DIR")
    v.add_argument("--eval", default=None, metavar="NPZ", help="evaluation data (default: the one recorded at export)")
    v.add_argument("--threads", type=int, default=None)
    v.set_defaults(func=cmd_verify)

    i = sub.add_parser("info", help="human summary of a bundle's manifest")
    i.add_argument("bundle", metavar="BUNDLE_DIR")
    i.add_argument("--json", action="store_true", help="print manifest.json")
    i.add_argument("--no-hash-check", action="store_true", help="skip the sha256 check of artifact files")
    i.set_defaults(func=cmd_info)

    b = sub.add_parser("backends", help="which backends this machine can use, and why not")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_backends)

    for name, cap, text in (
        ("compile", "engine compilation (TensorRT/OpenVINO INT8)", "compile a bundle for a target"),
        ("bench", "the latency benchmark matrix", "benchmark a bundle"),
        ("run", "the camera + microphone streaming runtime", "run a bundle on live streams"),
    ):
        c = sub.add_parser(name, help=f"{text} (coming: {cap})", description=f"{text}. Not in this version yet: {cap}.")
        c.add_argument("args", nargs=argparse.REMAINDER)
        c.set_defaults(func=_waiting(cap))
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_verbosity(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    try:
        return args.func(args)
    except EdgemmError as exc:
        print(f"edgemm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgemm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
