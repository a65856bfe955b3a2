"""The export stage: a PyTorch model -> the fp32 torch reference (``torch.export``) and the fp32 ONNX.

Spec inference (from a ``.pt2`` program or from example inputs) lives here too. The pipeline
(``edgemm.pipeline``) runs this stage and the others and owns the bundle.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Mapping

import numpy as np

from ..lazy import lazy_import
from ..errors import EdgemmError, SpecError
from ..iospec import IOSpec, TensorSpec
from ..log import logger
from .options.export import ExportConfig
from ..torchutil import dynamic_shapes, is_program, quiet, run_module


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
    outs = run_module(model, example_inputs, [t.name for t in inputs])
    outputs = tuple(TensorSpec(f"output_{i}", str(o.dtype), ("batch", *o.shape[1:])) for i, o in enumerate(outs))
    return IOSpec(inputs, outputs)


def export_reference(model, args, spec: IOSpec, path: Path):
    """Save the fp32 reference as a torch.export program (self-contained, runs without the user's code)."""
    torch = lazy_import("torch")
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_program(model):
        torch.export.save(model, str(path))
        return model
    try:
        with quiet():
            ep = torch.export.export(model, args, dynamic_shapes=dynamic_shapes(spec), strict=False)
    except Exception as exc:  # the user's forward() raised or is not traceable: their input, one line
        from .export_errors import trace_failure

        shapes = ", ".join(f"{t.name} {list(a.shape)} {str(a.dtype).replace('torch.', '')}" for t, a in zip(spec.inputs, args))
        raise EdgemmError(trace_failure(exc, model, f"{type(model).__name__}.forward", shapes)) from exc
    from .export_errors import data_dependent_outputs

    unsized = data_dependent_outputs(ep, spec.output_names)
    if unsized:  # traced, but no target can run it sample by sample: say so here, not as a parity breach later
        raise EdgemmError(f"cannot export {type(model).__name__}: {unsized}")
    torch.export.save(ep, str(path))
    return ep


def export_onnx(model, args, spec: IOSpec, path: Path, cfg: ExportConfig, program=None) -> dict:
    """torch -> ONNX (dynamo exporter, legacy fallback), onnxslim, dynamic-axis check, full onnx.checker.

    ``model``'s attention modules are rewritten on a copy first (``cfg.rewrite_attention``, stages/rewrite.py);
    without any to rewrite, ``program`` (``model`` already traced by torch.export) is exported instead of tracing again."""
    torch = lazy_import("torch")
    onnx = lazy_import("onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    rewritten: list[str] = []
    if cfg.rewrite_attention and not is_program(model):
        from .rewrite import rewrite_attention

        model, rewritten = rewrite_attention(model)
    traced_from = model  # what the legacy exporter traces if the dynamo exporter fails (not the program below)
    if not rewritten and program is not None and cfg.exporter == "dynamo":
        model = program
    names = dict(input_names=spec.input_names, output_names=spec.output_names, opset_version=cfg.opset)
    used = cfg.exporter
    fallback_reason = None
    dynamo_error = None
    if cfg.exporter == "dynamo":
        try:
            with quiet() as log:
                torch.onnx.export(model, args, str(path), dynamic_shapes=dynamic_shapes(spec), dynamo=True, external_data=False, **names)
            logger.debug(log.getvalue())
        except Exception as exc:  # the dynamo exporter fails with many error types; we fall back and say why
            dynamo_error = exc
            fallback_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            logger.warning("warning: the dynamo ONNX exporter failed (%s); falling back to the legacy TorchScript exporter", fallback_reason)
            used = "legacy"
    if used == "legacy":
        # the legacy exporter traces the module itself (the program substituted above is for the dynamo exporter)
        module = traced_from.module() if is_program(traced_from) else traced_from
        dyn = {t.name: dict(t.dynamic_axes) for t in spec.inputs + spec.outputs if t.dynamic_axes}
        try:
            with quiet():
                torch.onnx.export(module, args, str(path), dynamic_axes=dyn, dynamo=False, **names)
        except Exception as exc:  # both exporters failed: the first failure names the op and the module best
            from .export_errors import onnx_failure

            if dynamo_error is not None:
                logger.debug("the legacy exporter's error: %s: %s", type(exc).__name__, exc)
            cause = dynamo_error or exc
            raise EdgemmError(onnx_failure(cause, cfg.opset, type(traced_from).__name__)) from cause
    proto = onnx.load(str(path))
    nodes_before = len(proto.graph.node)
    if cfg.slim:
        onnxslim = lazy_import("onnxslim")
        with quiet():
            proto = onnxslim.slim(proto)
    _check_dynamic_axes(proto, spec)
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EdgemmError(f"the exported ONNX model fails onnx.checker ({str(exc).splitlines()[0]}); try exporter = \"legacy\" in [export]") from exc
    for leftover in path.parent.glob(path.name + ".data"):
        leftover.unlink()
    return {"exporter": used, "opset": cfg.opset, "nodes": len(proto.graph.node), "nodes_before_slim": nodes_before,
            "fallback_reason": fallback_reason, "rewritten_attention": rewritten}


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
