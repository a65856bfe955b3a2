"""`edgemm compile`: a target backend's own artifact from a bundle's ONNX, added to the bundle and verified."""
from __future__ import annotations

ORDER = 15


def cmd_compile(args) -> int:
    from ...stages.compile import compile_bundle

    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    bundle = compile_bundle(args.bundle, args.target, precision=precision, graph=args.graph, verify=not args.no_verify,
                            threads=args.threads)
    print(f"bundle: {bundle.root}  ({len(bundle.artifacts)} artifacts; `edgemm info {args.bundle}` for details)")
    result = getattr(bundle, "last_verify", None)
    if result is not None:
        print(result.summary())
    return 0


def register(sub) -> None:
    from ...backends.registry import target_names

    c = sub.add_parser(
        "compile", help="compile a bundle's ONNX for a target backend (OpenVINO IR, ONNX Runtime optimized model, TensorRT)",
        description="Build a target backend's own artifact from the bundle's fp32 ONNX (or, with --int8, from the int8 model "
                    "`export --int8` made for that target), add it to the bundle and verify it. onnxruntime: the offline-"
                    "optimized model (graph fusions at the 'extended' level, portable across x86 CPUs). openvino: IR "
                    "(.xml/.bin). tensorrt: engines, built on the target GPU.",
        epilog="example: edgemm compile build/avnet --target openvino --int8")
    c.add_argument("bundle", metavar="BUNDLE_DIR")
    c.add_argument("--target", required=True, metavar="TARGET", help=f"one of: {', '.join(target_names())}")
    prec = c.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="fp16 artifact (where the target has one)")
    prec.add_argument("--int8", action="store_true", help="compile the bundle's int8 model for this target")
    c.add_argument("--graph", default=None, help="the graph to compile (default: main)")
    c.add_argument("--threads", type=int, default=None, help="threads for verification (default min(4, cores))")
    c.add_argument("--no-verify", action="store_true", help="skip verifying the new artifact (not recommended)")
    c.set_defaults(func=cmd_compile)
