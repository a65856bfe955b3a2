"""`edgemm export`: model/recipe -> verified bundle.

Its option flags are generated from the options classes of the stages and the built-in backends
(edgemm.options): ``--max-drop`` is ``[quantize] max_drop``, ``--openvino-num-streams`` is
``[compile.openvino] num_streams``; ``--option SECTION.KEY=VALUE`` reaches every other key.
"""
from __future__ import annotations

from .flags import (add_generic_flags, axis_range, add_section_flags, builtin_backend_options, positive_int, section_values,
                       stage_classes, stage_names)

ORDER = 10


def _classes():
    return (*stage_classes(), *builtin_backend_options().values())


def cmd_export(args) -> int:
    from ...configure import export
    from ...trust import allow_code

    with allow_code(args.trust_code):  # a torch.save model folder is unpickled only when asked
        bundle = export(
            args.model, output=args.output, int8=args.int8, qat=args.qat, calibration=args.calib, evaluation=args.eval,
            verify=not args.no_verify, threads=args.threads, stages=stage_names(args), options=section_values(args, _classes()),
            axes=dict(args.axis or ()) or None,
        )
    from ...stages.verify import VerifyResult

    result = VerifyResult.from_bundle(bundle) if not args.no_verify else None
    print(f"bundle: {bundle.root}  ({len(bundle.artifacts)} artifacts; `edgemm info {args.output}` for details)")
    if result is not None:
        print(result.summary())
    return 0


def _quantizer_help() -> str:
    # Static on purpose: the parser is also built for --help and --version, which must not read the registries
    # (they load plugins' code). tests/test_plugin_isolation.py checks the names against the built-in quantizers.
    return ("one quantizer for every target, or TARGET=Q,... per target. Built in: ort (ONNX Runtime Q/DQ, uint8 "
            "activations), trt (TensorRT-valid symmetric int8 Q/DQ), nncf (NNCF on the OpenVINO model -> INT8 IR), "
            "inc (Intel Neural Compressor PT2E on the torch model), litert (litert-torch PT2E on the torch model -> "
            ".tflite); plugins add more. Default: each target's own "
            "(default_quantizer in `edgemm backends --json`)")


def register(sub) -> None:
    e = sub.add_parser("export", help="export a model to a verified bundle",
                       description="Export a recipe (.toml), a torch.export program (.pt2), an fp32 ONNX model (.onnx) or a model "
                                   "folder to a bundle: torch reference, fp32 ONNX, per-target artifacts (OpenVINO IR fp32/fp16), "
                                   "parity + accuracy + latency reports. From an .onnx file the IOSpec is the graph's and the "
                                   "fp32 ONNX is the reference (no torch); a recipe whose [model] path names the .onnx adds "
                                   "modality, pre-processing and labels per input/output. Every [section] option below is also a "
                                   "recipe key and an edgemm.export(options=...) entry.",
                       epilog="examples: edgemm export export/avnet.toml -o build/avnet; "
                              "edgemm export model.onnx --int8 --calib feeds.npz -o build/model")
    e.add_argument("model", metavar="RECIPE_OR_MODEL", help="recipe .toml, torch.export .pt2 file, fp32 .onnx model, or a model "
                   "folder (Hugging Face save_pretrained, timm, or a torch.save'd module with --trust-code; see edgemm.families)")
    e.add_argument("--trust-code", action="store_true", help="allow loading a model folder that needs unpickling (torch.save)")
    e.add_argument("-o", "--output", required=True, metavar="BUNDLE_DIR", help="bundle directory (replaced if it is a bundle)")
    e.add_argument("--axis", action="append", type=axis_range, metavar="NAME=MIN:OPT:MAX",
                   help="the sizes a named dynamic axis may take, e.g. batch=1:1:16 (or batch=8: a fixed size); used by the "
                        "export, TensorRT profiles, bench and the runtime's feed check (default 1..4096, or the recipe's [axes]); repeatable")
    e.add_argument("--eval", default=None, metavar="NPZ", help="labelled evaluation data (default: the recipe's [data] evaluation)")
    e.add_argument("--calib", default=None, metavar="DIR_OR_NPZ",
                   help="calibration data for --int8: .npz file or directory (keys = input names), or 'synthetic' "
                        "(speed only, no accuracy claim); default: the recipe's [data] calibration")
    e.add_argument("--int8", action="store_true", help="INT8 post-training quantization")
    e.add_argument("--qat", action="store_true", help="quantization-aware training")
    e.add_argument("--threads", type=positive_int, default=None, help="threads for verification and timing (default min(4, cores))")
    e.add_argument("--no-verify", action="store_true", help="skip parity/accuracy checks (not recommended)")
    add_generic_flags(e, stages=True)
    add_section_flags(e, _classes(), helps={"quantize": {"quantizer": _quantizer_help()}})
    e.set_defaults(func=cmd_export)
