"""`edgemm compile`: a target backend's own artifact from a bundle's ONNX, added to the bundle and verified
(only what it added is verified and timed: edgemm.stages.verify_added).

The backends' compile options are flags generated from their options classes (``--openvino-num-streams``
is ``[compile.openvino] num_streams``); ``--option compile.<backend>.KEY=VALUE`` reaches a plugin backend's.
"""
from __future__ import annotations

from ...errors import ConfigError
from .flags import add_generic_flags, add_section_flags, builtin_backend_options, positive_int, section_values

ORDER = 15


def cmd_compile(args) -> int:
    from ...stages.compile import compile_bundle

    given = section_values(args, builtin_backend_options().values())
    section = f"compile.{args.target}"
    others = sorted(s for s in given if s != section)
    if others:
        raise ConfigError(f"options of {', '.join(others)} were given, but this compiles for {args.target}; "
                          f"give only {section} options (--{args.target}-* flags or --option {section}.KEY=VALUE)")
    from ...bundle import Bundle

    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    before = {(a.path, a.backend, a.sha256) for a in Bundle.open(args.bundle).artifacts}
    # verified below: only the artifacts this compile added are checked and timed (the others have not changed)
    bundle = compile_bundle(args.bundle, args.target, precision=precision, graph=args.graph, verify=False,
                            threads=args.threads, options=given.get(section))
    bundle = Bundle.open(bundle.root)  # as the compile left it
    added = [(a.path, a.backend) for a in bundle.artifacts if (a.path, a.backend, a.sha256) not in before]
    result = None
    if not args.no_verify and added:
        from ...stages.verify_added import verify_added

        result = verify_added(bundle.root, added, threads=args.threads)
    print(f"bundle: {bundle.root}  ({len(bundle.artifacts)} artifacts, added {', '.join(p for p, _ in added) or 'none'}; "
          f"`edgemm info {args.bundle}` for details)")
    if result is not None:
        print(result.summary())
    return 0


def register(sub) -> None:
    backends = builtin_backend_options()
    c = sub.add_parser(
        "compile", help="compile a bundle's ONNX for a target backend (OpenVINO IR, ONNX Runtime optimized model, TensorRT)",
        description="Build a target backend's own artifact from the bundle's fp32 ONNX (or, with --int8, from the int8 model "
                    "`export --int8` made for that target), add it to the bundle and verify it. onnxruntime: the offline-"
                    "optimized model (graph fusions at the 'extended' level by default, portable across x86 CPUs). openvino: IR "
                    "(.xml/.bin). tensorrt: engines, built on the target GPU. Each backend's options are also its recipe "
                    "table [compile.<backend>].",
        epilog="example: edgemm compile build/avnet --target openvino --int8")
    c.add_argument("bundle", metavar="BUNDLE_DIR")
    c.add_argument("--target", required=True, metavar="TARGET",
                   help="the backend to compile for (`edgemm backends` lists them; built in: onnxruntime, openvino, tensorrt)")
    prec = c.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="fp16 artifact (where the target has one)")
    prec.add_argument("--int8", action="store_true", help="compile the bundle's int8 model for this target")
    c.add_argument("--graph", default=None, help="the graph to compile (default: every graph)")
    c.add_argument("--threads", type=positive_int, default=None, help="threads for verification (default min(4, cores))")
    c.add_argument("--no-verify", action="store_true", help="skip verifying the new artifact (not recommended)")
    add_generic_flags(c, stages=False)
    add_section_flags(c, backends.values())
    c.set_defaults(func=cmd_compile)
