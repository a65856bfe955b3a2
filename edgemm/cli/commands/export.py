"""`edgemm export`: model/recipe -> verified bundle."""
from __future__ import annotations

from ..options import targets as _targets

ORDER = 10


def cmd_export(args) -> int:
    from ...configure import export

    bundle = export(
        args.model, output=args.output, int8=args.int8, qat=args.qat, prune=args.prune,
        targets=args.target, calibration=args.calib, evaluation=args.eval, opset=args.opset,
        exporter=args.exporter, verify=not args.no_verify, threads=args.threads,
        max_drop=args.max_drop if args.max_drop is not None else "recipe",
        quantizer=_quantizers(args.quantizer), calibration_method=args.calib_method,
        speed_guard=False if args.no_speed_guard else None,
        prune_options={"criterion": args.prune_criterion, "heads": args.prune_heads, "keep": args.prune_keep, "epochs": args.finetune_epochs, "finetune_minutes": args.finetune_minutes,
                       "max_drop": args.prune_max_drop},
    )
    result = getattr(bundle, "last_verify", None)
    print(f"bundle: {bundle.root}  ({len(bundle.artifacts)} artifacts; `edgemm info {args.output}` for details)")
    if result is not None:
        print(result.summary())
    return 0


def _quantizers(value: str | None):
    """``nncf`` (every target) or ``openvino=nncf,onnxruntime=ort`` -> dict / str / None."""
    if value is None:
        return None
    if "=" not in value:
        return value.strip()
    pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
    return {k.strip(): v.strip() for k, v in pairs}


def _quantizer_help() -> str:
    # Static on purpose: the parser is also built for --help and --version, which must not read the registries
    # (they load plugins' code). tests/test_plugin_isolation.py checks the names against the built-in quantizers.
    return ("one quantizer for every target, or TARGET=Q,... per target. Built in: ort (ONNX Runtime Q/DQ, uint8 "
            "activations), trt (TensorRT-valid symmetric int8 Q/DQ), nncf (NNCF on the OpenVINO model -> INT8 IR), "
            "inc (Intel Neural Compressor PT2E on the torch model); plugins add more. Default: each target's own "
            "(default_quantizer in `edgemm backends --json`)")


def register(sub) -> None:
    e = sub.add_parser("export", help="export a model to a verified bundle",
                       description="Export a recipe (.toml) or torch.export program (.pt2) to a bundle: torch reference, fp32 ONNX, "
                                   "per-target artifacts (OpenVINO IR fp32/fp16), parity + accuracy + latency reports.",
                       epilog="example: edgemm export export/avnet.toml -o build/avnet")
    e.add_argument("model", metavar="RECIPE_OR_MODEL", help="recipe .toml or torch.export .pt2 file")
    e.add_argument("-o", "--output", required=True, metavar="BUNDLE_DIR", help="bundle directory (replaced if it is a bundle)")
    e.add_argument("--target", type=_targets, default=None, metavar="T1,T2", help="comma-separated targets from `edgemm backends` "
                   "(default: the recipe's)")
    e.add_argument("--eval", default=None, metavar="NPZ", help="labelled evaluation data (default: the recipe's [data] evaluation)")
    e.add_argument("--calib", default=None, metavar="DIR_OR_NPZ",
                   help="calibration data for --int8: .npz file or directory (keys = input names), or 'synthetic' "
                        "(speed only, no accuracy claim); default: the recipe's [data] calibration")
    e.add_argument("--calib-method", choices=("minmax", "percentile", "entropy"), default=None,
                   help="activation range calibration (default: the recipe's, else minmax)")
    e.add_argument("--quantizer", default=None, metavar="Q|TARGET=Q,...", help=_quantizer_help())
    e.add_argument("--no-speed-guard", action="store_true",
                   help="do not keep slow-in-int8 ops float on CPU targets (by default INT8 must not be slower than fp32)")
    e.add_argument("--int8", action="store_true", help="INT8 post-training quantization")
    e.add_argument("--qat", action="store_true", help="quantization-aware training")
    e.add_argument("--prune", default=None, metavar="RATIO",
                   help="structured pruning: 0.5 (the whole model: both branches, the token width where they meet, attention "
                        "heads and MLP widths; inputs and outputs stay), image=0.5,audio=0.3 (only the named branches; add fusion=R "
                        "for the part where they meet) or 2:4 (semi-structured sparsity for TensorRT sparse weights; no CPU speedup). Channels "
                        "are removed for real, then the model is fine-tuned with distillation from the original on the training "
                        "split (the recipe's [data] training: a sample file or a [data.training] generator; else the calibration data); the original stays the accuracy reference (default: the recipe's [prune])")
    e.add_argument("--prune-criterion", choices=("magnitude", "taylor"), default=None, help="channel importance (default magnitude)")
    e.add_argument("--prune-heads", choices=("remove", "narrow"), default=None,
                   help="attention: remove whole heads (4x24 -> 2x24 at 0.5, then narrow the rest to the ratio) or narrow every head "
                        "and keep their number (4x24 -> 4x12) (default remove)")
    e.add_argument("--prune-keep", default=None, metavar="MODULE,...",
                   help="module names whose output channels stay unpruned (their whole channel group keeps its width), e.g. "
                        "image.body.0.0,fuse.0; with 2:4 the named layers (and those under them) stay dense; reports/pruning.json lists "
                        "each group's modules (default: the recipe's [prune] keep)")
    e.add_argument("--finetune-epochs", type=int, default=None, metavar="N", help="pruning fine-tune epochs in total (default 40, fewer on a large training split: "
                   "at most 144,000 samples seen, e.g. 15 epochs of avnet's 9,600 pairs)")
    e.add_argument("--prune-max-drop", default=None, metavar="DROP",
                   help="pruning's own accuracy budget: top-1 drop vs the original on every head after fine-tuning "
                        "(default 0.015 = 1.5 points; none = report only); the bundle is written either way, exit 2 when missed")
    e.add_argument("--finetune-minutes", type=float, default=None, metavar="M", help="wall-clock budget of the pruning fine-tune")
    e.add_argument("--max-drop", default=None, metavar="DROP", help="accuracy budget for --int8 on the evaluation split: 0.01 = 1 point top-1 absolute (default), "
                        "2%% relative, none = report only; sensitive parts stay float until it holds")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    e.add_argument("--exporter", choices=("dynamo", "legacy"), default=None, help="ONNX exporter (default dynamo, legacy on failure)")
    e.add_argument("--threads", type=int, default=None, help="threads for verification and timing (default min(4, cores))")
    e.add_argument("--no-verify", action="store_true", help="skip parity/accuracy checks (not recommended)")
    e.set_defaults(func=cmd_export)
