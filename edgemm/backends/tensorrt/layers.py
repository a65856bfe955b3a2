"""Reports about the layers of a TensorRT network/engine, from plain data the builder and inspector give.

- DLA with GPU fallback ("Working with DLA": ``IBuilderConfig.can_run_on_DLA(layer)``; ``BuilderFlag.GPU_FALLBACK``
  runs the layers DLA cannot run on the GPU): which layers fell back, and a refusal when fallback is off.
- Layer -> ONNX node: the ONNX parser names layers after their nodes and records the node in the layer's metadata
  (``[ONNX Layer: name]``); both are read, the metadata first.
- Engine inspector JSON (``IEngineInspector.get_engine_information``): TensorRT 10 lists ``Bindings`` as names,
  TensorRT 11 replaced them with ``I/O Tensors`` objects (migration guide, "Migrating IEngineInspector Usage").
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping

from ...errors import UnsupportedFeature

_META = re.compile(r"\[ONNX Layer: (?P<name>[^\]]+)\]")


def onnx_node_of(layer_name: str, metadata: str | None, node_names: Iterable[str]) -> str | None:
    """The ONNX node a TensorRT layer came from: the metadata's ``[ONNX Layer: X]``, else a node of the same name,
    else the longest node name the layer name starts with followed by a separator (auxiliary layers)."""
    nodes = set(node_names)
    if metadata:
        m = _META.search(metadata)
        if m and m.group("name") in nodes:
            return m.group("name")
    if layer_name in nodes:
        return layer_name
    best = None
    for n in nodes:
        if n and layer_name.startswith(n) and layer_name[len(n):][:1] in ("_", " ", ".", "[", ":", "+"):
            if best is None or len(n) > len(best):
                best = n
    return best


def dla_fallback(layers: Mapping[str, Mapping], dla_core: int | None, gpu_fallback: bool = True) -> dict:
    """Where the layers run when ``dla_core`` is set: ``layers`` maps a layer name to ``{"type", "can_run_on_dla"}``
    (``onnx_node`` optional). Returns ``{"dla_core", "dla_layers", "gpu_layers": [...], "gpu_by_type": {...}}``;
    without GPU fallback a layer DLA cannot run is refused in one line."""
    if dla_core is None:
        return {"dla_core": None, "dla_layers": 0, "gpu_layers": [], "gpu_by_type": {}}
    gpu = [name for name, info in layers.items() if not info.get("can_run_on_dla", False)]
    if gpu and not gpu_fallback:
        first = ", ".join(f"{n} ({layers[n].get('type', '?')})" for n in gpu[:3])
        raise UnsupportedFeature(f"{len(gpu)} layer(s) cannot run on DLA core {dla_core} (e.g. {first}) and GPU fallback is "
                                 "off; allow GPU fallback or leave the DLA core unset")
    by_type = Counter(str(layers[n].get("type", "?")) for n in gpu)
    names = [layers[n].get("onnx_node") or n for n in gpu]
    return {"dla_core": dla_core, "dla_layers": len(layers) - len(gpu), "gpu_layers": names, "gpu_by_type": dict(sorted(by_type.items()))}


def fp32_pinned_layers(layers: Mapping[str, Mapping], keep_nodes: Iterable[str], keep_ops: Iterable[str]) -> list[str]:
    """The layers a weakly typed fp16 build pins to fp32: those from a kept ONNX node or a kept ONNX op type
    (``layers``: layer name -> ``{"onnx_node", "onnx_op"}``)."""
    keep_nodes, keep_ops = set(keep_nodes), set(keep_ops)
    return [name for name, info in layers.items()
            if info.get("onnx_node") in keep_nodes or (info.get("onnx_op") and info.get("onnx_op") in keep_ops)]


def engine_summary(info: Mapping) -> dict:
    """``{"layers": n, "inputs": [...], "outputs": [...]}`` from the engine inspector's JSON, TensorRT 10 or 11 schema."""
    layers = info.get("Layers") or []
    inputs: list[str] = []
    outputs: list[str] = []
    if "I/O Tensors" in info:  # TensorRT 11
        for t in info["I/O Tensors"]:
            (inputs if str(t.get("IOMode", "")).lower() == "input" else outputs).append(t.get("Name"))
    else:  # TensorRT 10: a flat list of names; which are inputs is not in it
        inputs = list(info.get("Bindings") or [])
    return {"layers": len(layers), "inputs": inputs, "outputs": outputs}
