"""A bare model file as a model: a user's ONNX (``.onnx``) or OpenVINO IR (``.xml`` + ``.bin``).

``edgemm export model.onnx`` starts from the user's fp32 ONNX instead of a PyTorch model: the IOSpec comes
from the graph (input and output names, dtypes, shapes; every dynamic dimension becomes a named axis) and
what the graph cannot say (modality, pre-processing, labels, task) from a small TOML, the same
``[[inputs]]`` / ``[[outputs]]`` tables a recipe has, whose ``[model] path`` names the file. The fp32
ONNX is the reference: INT8 and every target's artifact are compared with it, and no torch is needed.

``edgemm bench model.onnx`` (or ``model.xml``) times the file as it is, through a temporary bundle that
holds only that file (``bench_source``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .bundle import MODEL_FILE_SUFFIXES, Artifact, BundleWriter
from .errors import EdgemmError, SpecError, close_match_hint
from .files import sha256_file
from .iospec import IOSpec, TensorSpec, preprocess_from_dict

ONNX_SUFFIX = ".onnx"
IR_SUFFIX = ".xml"
SUFFIXES = MODEL_FILE_SUFFIXES  # (ONNX_SUFFIX, IR_SUFFIX)
# Q/DQ and QLinear ops: an ONNX file holding them is an INT8 model (bench labels it so)
_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
             "DynamicQuantizeLinear"}


@dataclass(frozen=True)
class ModelFile:
    """The user's model file: the model of a graph exported from ONNX (no torch module behind it)."""

    path: Path
    format: str  # "onnx" | "openvino-ir"
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def is_model_file_path(path: str | os.PathLike) -> bool:
    """``path`` names a bare model file edgemm reads (by its suffix), not a recipe, program or bundle."""
    return Path(path).suffix.lower() in SUFFIXES


def is_model_file(obj: Any) -> bool:
    return isinstance(obj, ModelFile)


def open_model_file(path: str | os.PathLike) -> ModelFile:
    p = Path(path)
    if not p.is_file():
        raise EdgemmError(f"model file {p} not found; check the path")
    suffix = p.suffix.lower()
    if suffix == IR_SUFFIX and not p.with_suffix(".bin").is_file():
        raise EdgemmError(f"{p} is an OpenVINO IR without its weights file {p.with_suffix('.bin').name}; keep the .xml and "
                          ".bin side by side")
    if suffix not in SUFFIXES:
        raise EdgemmError(f"{p} is not a model file edgemm reads; give an .onnx file or an OpenVINO IR .xml")
    return ModelFile(p, "onnx" if suffix == ONNX_SUFFIX else "openvino-ir", sha256_file(p))


# ----------------------------------------------------------------------------------------------- the graph's IOSpec


def _axis(axis: int, tensor: str) -> str:
    """The name of a dynamic dimension the graph leaves unnamed: ``batch`` for axis 0, else ``<tensor>_dim<i>``."""
    return "batch" if axis == 0 else f"{tensor}_dim{axis}"


def spec_from_onnx(path: str | os.PathLike) -> IOSpec:
    """IOSpec of an ONNX graph: input (not initializer) and output names, numpy dtypes, shapes with each dynamic
    dimension named (its ``dim_param``, else ``batch`` on axis 0)."""
    from .lazy import lazy_import

    onnx = lazy_import("onnx", "export")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a corrupt or non-ONNX file: the protobuf parser's many error types
        raise EdgemmError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc}); check the file") from exc
    inits = {i.name for i in proto.graph.initializer}

    def tensor(v) -> TensorSpec:
        tt = v.type.tensor_type
        if not v.type.HasField("tensor_type"):
            raise EdgemmError(f"{path}: graph input/output {v.name!r} is not a tensor; edgemm runs tensor inputs and outputs")
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgemmError(f"{path}: {v.name!r} has ONNX element type {tt.elem_type}, which numpy has no dtype for") from exc
        if not tt.HasField("shape"):
            raise EdgemmError(f"{path}: {v.name!r} has no shape in the graph; run onnx.shape_inference on it, or give its "
                              "shape in the TOML's [[inputs]] / [[outputs]] table")
        shape = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            else:
                shape.append(d.dim_param or _axis(i, v.name))
        return TensorSpec(v.name, dtype, tuple(shape))

    inputs = tuple(tensor(v) for v in proto.graph.input if v.name not in inits)
    outputs = tuple(tensor(v) for v in proto.graph.output)
    return IOSpec(inputs, outputs)


def spec_from_ir(path: str | os.PathLike) -> IOSpec:
    """IOSpec of an OpenVINO IR: port names, element types, partial shapes (dynamic dimensions named)."""
    from .lazy import lazy_import

    ov = lazy_import("openvino", "openvino")
    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line text
        raise EdgemmError(f"{path} is not a readable OpenVINO IR ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                          "check the .xml/.bin pair") from exc

    def tensor(port, i: int, kind: str) -> TensorSpec:
        names = port.get_names()
        name = port.get_any_name() if names else f"{kind}_{i}"
        shape = []
        for a, d in enumerate(port.get_partial_shape()):
            shape.append(int(d.get_length()) if d.is_static else _axis(a, name))
        return TensorSpec(name, port.get_element_type().to_dtype().name, tuple(shape))

    return IOSpec(tuple(tensor(p, i, "input") for i, p in enumerate(model.inputs)),
                  tuple(tensor(p, i, "output") for i, p in enumerate(model.outputs)))


def spec_of(mf: ModelFile) -> IOSpec:
    return spec_from_onnx(mf.path) if mf.format == "onnx" else spec_from_ir(mf.path)


def merge_spec(graph: IOSpec, inputs: Sequence[Mapping[str, Any]] = (), outputs: Sequence[Mapping[str, Any]] = (),
               axes: Mapping[str, Any] | None = None, where: str = "the TOML") -> IOSpec:
    """The graph's IOSpec with what ``[[inputs]]`` / ``[[outputs]]`` tables add by name: modality, preprocessing,
    labels, task; a ``dtype`` or ``shape`` given must agree with the graph (a string in ``shape`` renames a dynamic
    dimension); ``axes``: ranges of the named axes."""
    def merged(kind: str, tables, have: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
        by_name = {t.name: t for t in have}
        out = dict(by_name)
        for i, table in enumerate(tables):
            if not isinstance(table, Mapping):
                raise SpecError(f"{where}: [[{kind}s]] entry {i} must be a table with a name")
            name = table.get("name")
            if name not in by_name:
                raise SpecError(f"{where}: [[{kind}s]] names {name!r}, which the graph does not have"
                                f"{close_match_hint(str(name), by_name)}; its {kind}s: {', '.join(by_name)}")
            known = {"name", "dtype", "shape"} | ({"modality", "preprocessing"} if kind == "input" else {"labels", "task"})
            unknown = sorted(set(table) - known)
            if unknown:
                raise SpecError(f"{where}: [[{kind}s]] {name!r}: unknown key {unknown[0]!r}{close_match_hint(unknown[0], known)}; "
                                f"keys: {', '.join(sorted(known))}")
            t = by_name[name]
            if "dtype" in table and str(table["dtype"]) != t.dtype:
                raise SpecError(f"{where}: {kind} {name!r} has dtype {t.dtype} in the graph, not {table['dtype']!r}; "
                                "drop dtype from the table (the graph's is used)")
            shape = t.shape
            if "shape" in table:
                shape = _merged_shape(t, table["shape"], kind, where)
            changes: dict[str, Any] = {"shape": shape}
            if kind == "input":
                modality = table.get("modality", t.modality)
                changes["modality"] = modality
                changes["preprocessing"] = preprocess_from_dict(modality, table.get("preprocessing"))
            else:
                if table.get("labels") is not None:
                    changes["labels"] = tuple(str(x) for x in table["labels"])
                if table.get("task") is not None:
                    changes["task"] = table["task"]
            out[name] = replace(t, **changes)
        return tuple(out[t.name] for t in have)

    return IOSpec(merged("input", inputs, graph.inputs), merged("output", outputs, graph.outputs), dict(axes or {}))


def _merged_shape(t: TensorSpec, given: Any, kind: str, where: str) -> tuple:
    if not isinstance(given, (list, tuple)) or len(given) != len(t.shape):
        raise SpecError(f"{where}: {kind} {t.name!r} has shape {list(t.shape)} in the graph, not {given!r}; drop shape from "
                        "the table (the graph's is used) or give one of the same rank")
    out = []
    for have, want in zip(t.shape, given):
        if isinstance(have, int):
            if want != have:
                raise SpecError(f"{where}: {kind} {t.name!r} has shape {list(t.shape)} in the graph, not {list(given)}; a fixed "
                                "dimension of the graph cannot change")
            out.append(have)
        elif isinstance(want, str) and want:
            out.append(want)  # a dynamic dimension renamed
        else:
            raise SpecError(f"{where}: {kind} {t.name!r}: dimension {have!r} is dynamic in the graph; name it (a string) "
                            f"instead of fixing it to {want!r}")
    return tuple(out)


def graph_spec(path: str | os.PathLike, inputs=(), outputs=(), axes=None, where: str = "the TOML") -> tuple[ModelFile, IOSpec]:
    """The model file and its IOSpec: the graph's, merged with the given tables."""
    mf = open_model_file(path)
    return mf, merge_spec(spec_of(mf), inputs, outputs, axes, where)


def copy_onnx(mf: ModelFile, dest: Path) -> dict:
    """The user's ONNX into the bundle as one self-contained file (external data read in), checked by
    onnx.checker. -> what the export stage records (nodes, opset)."""
    from .lazy import lazy_import

    onnx = lazy_import("onnx", "export")
    if mf.format != "onnx":
        raise EdgemmError(f"{mf.path} is an OpenVINO IR: edgemm exports from ONNX (the one INT8 interchange format); give the "
                          f"model's .onnx file, or time the IR as it is with `edgemm bench {mf.path}`")
    try:
        proto = onnx.load(str(mf.path))  # external data is read in from beside the file
    except Exception as exc:  # a missing .data file or a corrupt protobuf
        raise EdgemmError(f"cannot read {mf.path} ({type(exc).__name__}: {exc}); keep its external data files beside it") from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    large = proto.ByteSize() > 1_800_000_000  # protobuf's 2 GB cap: larger models keep external data
    onnx.save(proto, str(dest), save_as_external_data=large, location=dest.name + ".data" if large else None)
    try:
        onnx.checker.check_model(str(dest))
    except onnx.checker.ValidationError as exc:
        raise EdgemmError(f"{mf.path} fails onnx.checker ({str(exc).splitlines()[0]}); fix the model (onnx.checker.check_model "
                          "names the node)") from exc
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {"exporter": "user onnx", "opset": opset, "nodes": len(proto.graph.node), "nodes_before_slim": len(proto.graph.node),
            "fallback_reason": None, "rewritten_attention": [], "producer": proto.producer_name or None,
            "external_data": large}


def precision_of(mf: ModelFile) -> str:
    """``int8`` for a quantized graph (Q/DQ or QLinear ops; an IR with FakeQuantize), else ``fp32``."""
    if mf.format == "onnx":
        from .lazy import lazy_import

        onnx = lazy_import("onnx", "bench")
        proto = onnx.load(str(mf.path), load_external_data=False)
        return "int8" if any(n.op_type in _INT8_OPS for n in proto.graph.node) else "fp32"
    text = mf.path.read_text(errors="replace")
    return "int8" if 'type="FakeQuantize"' in text or 'type="FakeConvert"' in text else "fp32"


# ----------------------------------------------------------------------------------------------- bench a bare file


def _file_bundle(mf: ModelFile, spec: IOSpec, out: Path):
    """A bundle at ``out`` holding only ``mf`` (one artifact per CPU backend that runs its format), no reports."""
    from . import layout
    from .backends.base import version_of
    from .backends.registry import all_backends

    precision = precision_of(mf)
    with BundleWriter(out) as w:
        folder = "onnx" if mf.format == "onnx" else "openvino"
        rel = f"{folder}/{mf.name}"
        shutil.copyfile(mf.path, w.path(rel))
        files = [rel]
        if mf.format == "openvino-ir":
            bin_rel = f"{folder}/{mf.path.with_suffix('.bin').name}"
            shutil.copyfile(mf.path.with_suffix(".bin"), w.path(bin_rel))
            files.append(bin_rel)
        for b in all_backends().values():
            if b.reference or b.device != "cpu" or not b.runs(mf.format) or precision not in b.precisions:
                continue
            w.add_artifact(Artifact(rel, mf.format, precision, b.name, b.name, graph=layout.MAIN,
                                    toolchain={b.name: version_of(b.name) or "?"}), files=files)
        if not w.artifacts:
            raise EdgemmError(f"no installed backend runs {mf.format} files on this CPU; pip install onnxruntime openvino")
        samples = layout.parity_samples_path(layout.MAIN)  # what the timing workers feed: random, of the graph's shapes
        np.savez(w.path(samples), **spec.example_feeds(batch=8, seed=0))
        parity = {"path": samples, "source": "random feeds (a bare model file: no data)"}
        manifest = {"model": {"name": mf.path.stem, "source": f"{mf.format} file {mf.name}", "sha256": mf.sha256},
                    "graphs": {layout.MAIN: {**spec.to_manifest(), "parity": parity}},
                    "calibration": {"source": None, "sha256": None, "samples": 0, "method": None}, "reports": {}}
        return w.commit(manifest)


@contextmanager
def bench_source(path: str | os.PathLike) -> Iterator[str | os.PathLike]:
    """``path`` as ``edgemm.benchmark`` takes it: a bundle as it is; a bare .onnx / .xml file as a temporary bundle
    holding only that file (removed afterwards)."""
    if not (is_model_file_path(path) and Path(path).is_file()):
        yield path
        return
    mf = open_model_file(path)
    spec = spec_of(mf)
    with tempfile.TemporaryDirectory(prefix="edgemm-bench-file-") as tmp:
        bundle = _file_bundle(mf, spec, Path(tmp) / mf.path.stem)
        yield bundle.root


__all__ = ["ModelFile", "SUFFIXES", "is_model_file", "is_model_file_path", "open_model_file",
           "spec_from_onnx", "spec_from_ir", "spec_of", "merge_spec", "graph_spec", "copy_onnx", "precision_of", "bench_source"]
