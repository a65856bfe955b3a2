"""Export: a trained PyTorch model -> bundle (torch reference, fp32 ONNX, per-target artifacts), verified.

``edgemm.export(model_or_path, example_inputs=None, spec=None, *, output, ...)`` takes an
``nn.Module``, a ``torch.export`` ``.pt2`` file or a recipe ``.toml``.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import __version__
from .._lazy import lazy_import
from ..backends.base import version_of
from ..backends.registry import get_backend
from ..bundle import FORMAT_VERSION, MANIFEST, Artifact, Bundle, BundleWriter, sha256_file
from ..data.datasets import Samples, load_samples
from ..errors import EdgemmError, RecipeError, SpecError, UnsupportedFeature
from ..iospec import IOSpec, TensorSpec
from ..log import logger, step
from ..recipe import DataConfig, ExportConfig, ModelConfig, QuantizeConfig, Recipe, VerifyConfig, load_recipe, parse_max_drop

REFERENCE_PATH = "reference/model.pt2"
ONNX_PATH = "onnx/model.fp32.onnx"
PARITY_SAMPLES = "data/parity_samples.npz"


def load_pt2(path: Path):
    torch = lazy_import("torch")
    if not Path(path).is_file():
        raise EdgemmError(f"torch.export program {path} not found; save one with torch.export.save(ep, path)")
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # torch raises many types for a bad archive
        raise EdgemmError(f"cannot load {path} as a torch.export program ({type(exc).__name__}); save it with torch.export.save") from None


def _is_program(model) -> bool:
    torch = lazy_import("torch")
    return isinstance(model, torch.export.ExportedProgram)


def spec_from_program(ep) -> IOSpec:
    """IOSpec of a torch.export program: forward() parameter names, dtypes, shapes (symbolic dims named)."""
    torch = lazy_import("torch")
    user_inputs = list(ep.graph_signature.user_inputs)
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    inputs = []
    for name in user_inputs:
        val = nodes[name].meta.get("val")
        shape = []
        for i, d in enumerate(val.shape):
            shape.append(int(d) if isinstance(d, int) or (hasattr(d, "node") and d.node.is_constant()) else ("batch" if i == 0 else str(d)))
        inputs.append(TensorSpec(name, str(val.dtype).replace("torch.", ""), tuple(int(x) if not isinstance(x, str) else x for x in shape)))
    outs = [n for n in ep.graph.nodes if n.op == "output"][0].args[0]
    outputs = []
    for i, o in enumerate(outs):
        val = o.meta.get("val") if hasattr(o, "meta") else None
        shape = tuple("batch" if (j == 0 and not isinstance(d, int)) else (int(d) if isinstance(d, int) else str(d)) for j, d in enumerate(val.shape)) if val is not None else ()
        outputs.append(TensorSpec(f"output_{i}", str(val.dtype).replace("torch.", "") if val is not None else "float32", shape))
    del torch
    return IOSpec(tuple(inputs), tuple(outputs))


def spec_from_examples(model, example_inputs: Mapping[str, np.ndarray]) -> IOSpec:
    """IOSpec from example arrays: axis 0 is the dynamic ``batch`` axis, every output is a plain tensor."""
    params = list(inspect.signature(model.forward).parameters)
    unknown = [n for n in example_inputs if n not in params]
    if unknown:
        raise SpecError(f"example input(s) {unknown} are not parameters of {type(model).__name__}.forward{tuple(params)}")
    ordered = sorted(example_inputs, key=params.index)  # positional call order = forward() order, not dict order
    inputs = tuple(TensorSpec(n, str(example_inputs[n].dtype), ("batch", *example_inputs[n].shape[1:])) for n in ordered)
    outs = _run_module(model, example_inputs, [t.name for t in inputs])
    outputs = tuple(TensorSpec(f"output_{i}", str(o.dtype), ("batch", *o.shape[1:])) for i, o in enumerate(outs))
    return IOSpec(inputs, outputs)


def _run_module(module, feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    torch = lazy_import("torch")
    with torch.no_grad():
        out = module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names])
    out = (out,) if isinstance(out, torch.Tensor) else out
    return [o.numpy() for o in out]


def _dynamic_shapes(spec: IOSpec):
    torch = lazy_import("torch")
    dims: dict[str, Any] = {}
    shapes = []
    for t in spec.inputs:
        axes = {}
        for axis, name in t.dynamic_axes.items():
            if name not in dims:
                dims[name] = torch.export.Dim(name.replace("-", "_"), min=1, max=4096)
            axes[axis] = dims[name]
        shapes.append(axes or None)
    return tuple(shapes)


def _example_args(spec: IOSpec, feeds: Mapping[str, np.ndarray]):
    """Torch tensors in input order with every dynamic axis of size >= 2 (a size-1 example freezes the axis)."""
    torch = lazy_import("torch")
    args = []
    for t in spec.inputs:
        a = np.asarray(feeds[t.name])
        for axis in t.dynamic_axes:
            if a.shape[axis] < 2:
                a = np.concatenate([a, a], axis=axis)
        args.append(torch.from_numpy(np.ascontiguousarray(a)))
    return tuple(args)


@contextlib.contextmanager
def _quiet():
    """The exporters print progress banners and tracer warnings; keep them for --verbose only."""
    import logging

    buf = io.StringIO()
    torch_log = logging.getLogger("torch")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        torch_log.setLevel(level)


def export_reference(model, args, spec: IOSpec, path: Path):
    """Save the fp32 reference as a torch.export program (self-contained, runs without the user's code)."""
    torch = lazy_import("torch")
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_program(model):
        torch.export.save(model, str(path))
        return model
    try:
        with _quiet():
            ep = torch.export.export(model, args, dynamic_shapes=_dynamic_shapes(spec), strict=False)
    except Exception as exc:  # the user's forward() raised or is not traceable: their input, one line
        shapes = ", ".join(f"{t.name} {list(a.shape)} {str(a.dtype).replace('torch.', '')}" for t, a in zip(spec.inputs, args))
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise EdgemmError(
            f"torch.export cannot trace {type(model).__name__}.forward on example inputs ({shapes}): "
            f"{type(exc).__name__}: {first}; make forward() run on such inputs (see `edgemm -v export` for the traceback)"
        ) from exc
    torch.export.save(ep, str(path))
    return ep


def export_onnx(model, args, spec: IOSpec, path: Path, cfg: ExportConfig) -> dict:
    """torch -> ONNX (dynamo exporter, legacy fallback), onnxslim, dynamic-axis check, full onnx.checker."""
    torch = lazy_import("torch")
    onnx = lazy_import("onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    names = dict(input_names=spec.input_names, output_names=spec.output_names, opset_version=cfg.opset)
    used = cfg.exporter
    fallback_reason = None
    if cfg.exporter == "dynamo":
        try:
            with _quiet() as log:
                torch.onnx.export(model, args, str(path), dynamic_shapes=_dynamic_shapes(spec), dynamo=True, external_data=False, **names)
            logger.debug(log.getvalue())
        except Exception as exc:  # the dynamo exporter fails with many error types; we fall back and say why
            fallback_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            logger.warning("warning: the dynamo ONNX exporter failed (%s); falling back to the legacy TorchScript exporter", fallback_reason)
            used = "legacy"
    if used == "legacy":
        module = model.module() if _is_program(model) else model
        dyn = {t.name: dict(t.dynamic_axes) for t in spec.inputs + spec.outputs if t.dynamic_axes}
        with _quiet():
            torch.onnx.export(module, args, str(path), dynamic_axes=dyn, dynamo=False, **names)
    proto = onnx.load(str(path))
    nodes_before = len(proto.graph.node)
    if cfg.slim:
        onnxslim = lazy_import("onnxslim")
        with _quiet():
            proto = onnxslim.slim(proto)
    _check_dynamic_axes(proto, spec)
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EdgemmError(f"the exported ONNX model fails onnx.checker ({str(exc).splitlines()[0]}); try exporter = \"legacy\" in [export]") from None
    for leftover in path.parent.glob(path.name + ".data"):
        leftover.unlink()
    return {"exporter": used, "opset": cfg.opset, "nodes": len(proto.graph.node), "nodes_before_slim": nodes_before,
            "fallback_reason": fallback_reason}


def _check_dynamic_axes(proto, spec: IOSpec) -> None:
    """The dynamo exporter can freeze a dynamic axis silently; refuse such a graph."""
    by_name = {v.name: v for v in list(proto.graph.input) + list(proto.graph.output)}
    for t in spec.inputs + spec.outputs:
        v = by_name.get(t.name)
        if v is None:
            raise EdgemmError(f"the exported ONNX graph has no tensor named {t.name!r}; check that output names match the model")
        dims = v.type.tensor_type.shape.dim
        for axis in t.dynamic_axes:
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                raise EdgemmError(
                    f"the exporter froze dynamic axis {axis} of {t.name!r} to {dims[axis].dim_value}; "
                    "the model code probably specialises on that size (e.g. a reshape with a fixed batch)"
                )


@dataclass
class _Job:
    model: Any
    spec: IOSpec
    model_cfg: ModelConfig
    data: DataConfig
    export: ExportConfig
    verify: VerifyConfig
    source: str
    model_sha256: str
    quantize: QuantizeConfig
    policy: Any
    checkpoint_path: str | None = None


def _resolve(model_or_path, example_inputs, spec, targets, calibration, evaluation, opset, exporter) -> _Job:
    torch = lazy_import("torch", "export")
    recipe: Recipe | None = None
    if isinstance(model_or_path, (str, os.PathLike)):
        p = Path(model_or_path)
        if p.suffix == ".toml":
            recipe = load_recipe(p)
            model = recipe.build_model()
            spec = spec or recipe.spec
            source = f"recipe {p}"
        elif p.suffix == ".pt2":
            model = load_pt2(p)
            source = f"torch.export program {p}"
            recipe = Recipe(ModelConfig(name=p.stem, path=str(p)), spec or spec_from_program(model))
            spec = spec or recipe.spec
        elif not p.exists():
            raise EdgemmError(f"{p} not found; pass a recipe (.toml), a torch.export program (.pt2) or an nn.Module")
        else:
            raise EdgemmError(f"cannot export {p}: expected a recipe (.toml) or a torch.export program (.pt2)")
    elif isinstance(model_or_path, torch.nn.Module) or _is_program(model_or_path):
        model = model_or_path
        source = f"python {type(model).__module__}.{type(model).__qualname__}"
    else:
        raise EdgemmError(f"cannot export a {type(model_or_path).__name__}: pass an nn.Module, a .pt2 path or a recipe .toml path")
    if spec is None:
        if _is_program(model):
            spec = spec_from_program(model)
        elif example_inputs is None:
            raise SpecError("an nn.Module needs spec=IOSpec(...) or example_inputs={name: array} to name its inputs")
        else:
            spec = spec_from_examples(model, {k: np.asarray(v) for k, v in example_inputs.items()})
    if isinstance(model, torch.nn.Module):
        model.eval()
    base = recipe or Recipe(ModelConfig(name=type(model).__name__.lower()), spec)
    export_cfg = base.export
    if targets is not None:
        if isinstance(targets, str):  # "onnxruntime,openvino" from the API is a list of one or more targets
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        export_cfg = replace(export_cfg, targets=tuple(targets))
    if opset is not None:
        export_cfg = replace(export_cfg, opset=opset)
    if exporter is not None:
        export_cfg = replace(export_cfg, exporter=exporter)
    data = DataConfig(
        calibration=str(calibration) if calibration else (str(base.resolve(base.data.calibration)) if base.data.calibration else None),
        evaluation=str(evaluation) if evaluation else (str(base.resolve(base.data.evaluation)) if base.data.evaluation else None),
        training=str(base.resolve(base.data.training)) if base.data.training else None,
    )
    model_sha = ""
    for ref in (base.model.checkpoint, base.model.path):
        if ref and base.resolve(ref).is_file():
            model_sha = sha256_file(base.resolve(ref))
            break
    ckpt = str(base.resolve(base.model.checkpoint)) if base.model.checkpoint else None
    return _Job(model, spec, base.model, data, export_cfg, base.verify, source, model_sha, base.quantize, base.precision, ckpt)


def _add_qat_artifacts(w: BundleWriter, job: _Job, args, calib_src, eval_samples, ptq_cfg, ptq_results, threads):
    """Fine-tune with fake-quant (distilled from the original model), export, quantize like PTQ, compare."""
    import tempfile

    from .qat import QATConfig, qat_finetune
    from .quantize import add_int8_artifacts
    from .quantize.ptq import DEFAULT_QUANTIZER

    if _is_program(job.model):
        raise EdgemmError("--qat needs the model as an nn.Module (a recipe factory or the Python API), not a .pt2 program")
    source = job.data.training or job.data.calibration
    if source is None:
        raise EdgemmError("--qat needs training data: set [data] training (or calibration) in the recipe, or pass --calib")
    train = load_samples(source, job.spec)
    schemes = {ptq_cfg.quantizers.get(t, DEFAULT_QUANTIZER[t]) for t in job.export.targets}
    cfg = QATConfig(symmetric_activations=schemes <= {"trt", "nncf"}, threads=threads or 2)
    with step(f"QAT: fine-tuning with fake-quant on {len(train)} samples of {source} ({cfg.epochs} epochs, distilled from fp32)"):
        student = qat_finetune(job.model, job.spec, train.feeds, train.labels, cfg)
    with tempfile.TemporaryDirectory(prefix="edgemm-qat-") as tmp:
        qat_onnx = Path(tmp) / "qat.fp32.onnx"
        with step("exporting the QAT model to ONNX"):
            export_onnx(student, args, job.spec, qat_onnx, job.export)
        ptq_drop = {r.target: r.candidate.drop for r in ptq_results}
        qat_results = add_int8_artifacts(
            w, qat_onnx, job.spec, calib_src, eval_samples, job.export.targets, ptq_cfg, method_name="qat",
            reference_onnx=w.path(ONNX_PATH), stem="model.int8.qat", model=student,
            extra_info={"qat": {"data": source, "samples": len(train), "epochs": cfg.epochs, "lr": cfg.lr,
                                "distillation_temperature": cfg.temperature, "symmetric_activations": cfg.symmetric_activations,
                                "ptq_drop_on_target": ptq_drop}},
        )
    for r in qat_results:
        before = ptq_drop.get(r.target)
        if before is not None and r.candidate.drop is not None:
            logger.info("  QAT %s: drop %+.4f vs PTQ %+.4f (recovered %+.4f)", r.target, r.candidate.drop, before, before - r.candidate.drop)
    return qat_results


def export(
    model_or_path,
    example_inputs: Mapping[str, np.ndarray] | None = None,
    spec: IOSpec | None = None,
    *,
    output: str | os.PathLike,
    int8: bool = False,
    qat: bool = False,
    prune: float | None = None,
    targets: Sequence[str] | None = None,
    calibration: str | os.PathLike | None = None,
    evaluation: str | os.PathLike | None = None,
    opset: int | None = None,
    exporter: str | None = None,
    verify: bool = True,
    verify_config: VerifyConfig | None = None,
    threads: int | None = None,
    name: str | None = None,
    max_drop: float | str | None = "recipe",
    quantizer: Mapping[str, str] | str | None = None,
    calibration_method: str | None = None,
    speed_guard: bool | None = None,
    policy=None,
) -> Bundle:
    """Export a model to a verified bundle at ``output`` (written to a temp dir, renamed when complete).

    ``int8=True`` adds INT8 artifacts for every target (``calibration``: an .npz file/dir, an
    iterable of feeds, or "synthetic"); ``max_drop`` is the accuracy budget on the evaluation split
    (0.01 = 1 point absolute, "2%" relative, None = no budget). If the budget cannot be met, the
    bundle is written with the best model found and ``BudgetNotMet`` is raised.
    """
    if qat:
        int8 = True  # QAT produces INT8 artifacts; PTQ ones are kept beside them for comparison
    for flag, value, issue in (("prune", prune, "pruning"),):
        if value:
            raise UnsupportedFeature(
                f"--{flag} ({issue}) is not part of this edgemm version yet; export without it (--int8 works)"
            )
    calib_path = calibration if isinstance(calibration, (str, os.PathLike)) else None  # else an iterable of feeds
    job = _resolve(model_or_path, example_inputs, spec, targets, calib_path, evaluation, opset, exporter)
    for t in job.export.targets:
        if t != "tensorrt":  # TensorRT engines are built on the target GPU from the ONNX written here
            get_backend(t).require()
    ptq_cfg = None
    calib_src = None
    if int8:
        from ..data.calibration import calibration_source
        from .quantize import PTQConfig, PrecisionPolicy
        from .verify import default_threads

        qc = job.quantize
        if isinstance(quantizer, str):
            quantizer = {t: quantizer for t in job.export.targets}
        drop, relative = parse_max_drop(qc.max_drop if max_drop == "recipe" else max_drop)
        ptq_cfg = PTQConfig(
            method=calibration_method or qc.method, quantizers={**dict(qc.quantizer), **dict(quantizer or {})},
            max_drop=drop, relative=relative, speed_guard=qc.speed_guard if speed_guard is None else speed_guard,
            policy=policy or job.policy or PrecisionPolicy(), threads=threads or default_threads(),
        )
        from .quantize.ptq import QUANTIZERS

        for t, q in ptq_cfg.quantizers.items():
            if q not in QUANTIZERS:
                raise EdgemmError(f"unknown quantizer {q!r} for {t}; use one of {', '.join(QUANTIZERS)}")
        calib_input = job.data.calibration if calib_path is not None or calibration is None else calibration
        calib_src = calibration_source(calib_input, job.spec, limit=qc.calibration_limit)
    vcfg = verify_config or job.verify
    spec = job.spec
    name = name or job.model_cfg.name

    eval_samples: Samples | None = None
    if job.data.evaluation:
        with step(f"reading evaluation data {job.data.evaluation}"):
            eval_samples = load_samples(job.data.evaluation, spec, limit=vcfg.eval_limit)
    if example_inputs is not None:
        examples = spec.check_feeds({k: np.asarray(v) for k, v in example_inputs.items()}, "example_inputs: ")
    elif eval_samples is not None:
        examples = {k: v[:2] for k, v in eval_samples.feeds.items()}
    else:
        examples = spec.example_feeds(batch=2)
    args = _example_args(spec, examples)

    with BundleWriter(output) as w:
        with step("saving the fp32 torch reference (torch.export)"):
            program = export_reference(job.model, args, spec, w.path(REFERENCE_PATH))
        w.add_artifact(Artifact(REFERENCE_PATH, "torch-export", "fp32", "torch", "torch", toolchain={"torch": version_of("torch") or "?"}))
        with step(f"exporting ONNX (opset {job.export.opset}, {job.export.exporter} exporter)"):
            info = export_onnx(program if job.export.exporter == "dynamo" else job.model, args, spec, w.path(ONNX_PATH), job.export)
        logger.info("  %s: %d nodes (%d before onnxslim), exporter %s", ONNX_PATH, info["nodes"], info["nodes_before_slim"], info["exporter"])
        w.add_artifact(Artifact(ONNX_PATH, "onnx", "fp32", "onnxruntime", "onnxruntime",
                                toolchain={"torch": version_of("torch") or "?", "onnx": version_of("onnx") or "?",
                                           "onnxruntime": version_of("onnxruntime") or "?", "onnxslim": version_of("onnxslim") or "?"},
                                extra={"exporter": info["exporter"], "opset": info["opset"], "nodes": info["nodes"]}))
        for target in job.export.targets:
            backend = get_backend(target)
            if target == "tensorrt":  # the engine source; `edgemm compile --target tensorrt` builds on the GPU
                w.add_artifact(Artifact(ONNX_PATH, "onnx", "fp32", "tensorrt", "tensorrt", toolchain=w.artifacts[-1].toolchain))
                continue
            if target == "onnxruntime":
                continue
            precisions = ["fp32"] + (["fp16"] if job.export.fp16 and "fp16" in backend.precisions else [])
            for precision in precisions:
                rel_dir = f"{target}"
                with step(f"compiling for {target} ({precision})"):
                    made = backend.compile(w.path(ONNX_PATH), w.path(rel_dir + "/x").parent, spec, precision)
                for main, files, toolchain in made:
                    fmt = backend.formats[0]
                    w.add_artifact(Artifact(f"{rel_dir}/{main}", fmt, precision, target, target, toolchain=toolchain),
                                   files=[f"{rel_dir}/{f}" for f in files])
        int8_results = []
        if int8:
            from .quantize import add_int8_artifacts

            int8_results = add_int8_artifacts(w, w.path(ONNX_PATH), spec, calib_src, eval_samples, job.export.targets, ptq_cfg,
                                              model=job.model)
        if qat:
            # With --qat the QAT artifacts answer to the budget; PTQ ones stay for comparison.
            int8_results = _add_qat_artifacts(w, job, args, calib_src, eval_samples, ptq_cfg, int8_results, threads)
        parity_source = eval_samples if eval_samples is not None else None
        if parity_source is not None:
            parity = parity_source.take(slice(0, vcfg.parity_samples)).feeds
            parity_kind = f"first {min(vcfg.parity_samples, len(parity_source))} samples of {job.data.evaluation}"
        else:
            parity = spec.example_feeds(batch=vcfg.parity_samples, seed=1)
            parity_kind = "random feeds (no evaluation data given)"
        np.savez_compressed(w.path(PARITY_SAMPLES), **parity)
        manifest = {
            "model": {"name": name, "source": job.source, "sha256": job.model_sha256 or sha256_file(w.path(REFERENCE_PATH)),
                      # how to rebuild the user's original nn.Module (the benchmark baseline), when it came from a factory
                      "factory": job.model_cfg.factory, "checkpoint": job.checkpoint_path},
            **spec.to_manifest(),
            "calibration": calib_src.manifest_entry(ptq_cfg.method) if calib_src is not None
            else {"source": None, "sha256": None, "samples": 0, "method": None},
            "evaluation": {
                "source": job.data.evaluation,
                "sha256": sha256_file(Path(job.data.evaluation)) if job.data.evaluation and Path(job.data.evaluation).is_file() else None,
                "samples": len(eval_samples) if eval_samples is not None else 0,
            },
            "parity_samples": {"path": PARITY_SAMPLES, "source": parity_kind},
            "export": info,
            "verify": {"cosine_min": vcfg.cosine_min, "cosine_min_fp16": vcfg.cosine_min_fp16,
                       "cosine_min_int8": vcfg.cosine_min_int8, "max_abs": vcfg.max_abs, "batch": vcfg.batch},
            "reports": {},
        }
        if verify:
            from .verify import verify as run_verify

            # A provisional manifest, so that verify's timing workers can open the staged bundle; commit rewrites it.
            w.write_json(MANIFEST, {"format_version": FORMAT_VERSION, "edgemm_version": __version__, **manifest,
                                    "artifacts": [a.to_dict() for a in w.artifacts]})
            staged = Bundle.open(w.tmp, verify_hashes=False)
            reference = job.model.module() if _is_program(job.model) else job.model
            result = run_verify(staged, samples=eval_samples, config=vcfg, reference_module=reference, threads=threads, write=False)
            manifest["reports"] = {}
            for key, data in result.reports().items():
                rel = f"reports/{key}.json"
                w.write_json(rel, data)
                manifest["reports"][key] = rel
            result.raise_on_breach()
        bundle = w.commit(manifest)
    logger.info("bundle written to %s", bundle.root)
    if verify:
        bundle.last_verify = result  # type: ignore[attr-defined]
    missed = [r for r in int8_results if r.budget_met is False]
    if missed:
        from .quantize import BudgetNotMet

        r = min(missed, key=lambda r: r.candidate.drop)
        raise BudgetNotMet(
            f"INT8 accuracy budget {ptq_cfg.max_drop}{' relative' if ptq_cfg.relative else ''} not met for "
            f"{', '.join(x.target for x in missed)}: best drop {max(x.candidate.drop for x in missed):.4f} with "
            f"{sum(k['nodes'] for k in r.kept_float)} nodes kept float; the bundle at {bundle.root} holds that best model "
            f"(see reports/accuracy.json); raise --max-drop{'' if qat else ' or use --qat'}"
        )
    return bundle
