"""A family model -> ``ResolvedModel``: per graph the wrapper module, its IOSpec (outputs named and chosen), valid
example inputs, and what the graph's manifest entry records about the family.

Outputs are chosen by running the graph at two batch sizes: an output whose axis 0 does not follow the batch,
or that has a second axis following it (CLIP's ``logits_per_image``, images x texts), cannot be compared or
batched sample by sample; it is left out of the graph with a log line (a family that names it in ``keep`` gets
one error line instead).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .. import layout
from ..errors import EdgemmError, SpecError
from ..iospec import IOSpec, TensorSpec
from ..log import logger
from ..recipe import ModelConfig, Recipe
from ..resolved import GraphModel, ResolvedModel
from .base import Family, FamilyGraph
from .folder import ModelFolder

PROBE_BATCHES = (2, 3)


def resolve_family(family: Family, model, folder: ModelFolder | None, example_inputs=None, spec=None,
                   source: str = "", sha256: str = "", name: str | None = None) -> ResolvedModel:
    from .registry import call_family

    declared = call_family(family, "graphs", model, folder)
    if not declared:
        raise EdgemmError(f"family {family.name!r} found no graph to export in {source or type(model).__name__}")
    for g in declared:
        layout.check_graph_name(g)
    multi = len(declared) > 1
    examples_by_graph = _split_examples(example_inputs, declared, multi)
    specs_by_graph = _split_specs(spec, declared, multi)
    graphs: dict[str, GraphModel] = {}
    for gname, fg in declared.items():
        io = specs_by_graph.get(gname)
        if io is None:
            io = IOSpec(tuple(fg.inputs), choose_outputs(fg, gname, family.name))
        else:  # the user's spec names the outputs to keep
            fg.module.output_names = tuple(io.output_names)
        given = examples_by_graph.get(gname)
        examples = {k: np.asarray(v) for k, v in given.items()} if given is not None else fg.feeds(2, 0)
        io.check_feeds(examples, f"example inputs{'' if not multi else f' of graph {gname!r}'}: ")
        fg.module.eval()
        # read by the parity stage (valid parity feeds) and written into the graph's manifest entry
        fg.module.edgemm_family = {"name": family.name, **fg.data}
        fg.module.edgemm_valid_feeds = fg.feeds
        # read by the pruning stage: {module path: AttentionPattern} of the family's attention modules
        fg.module.edgemm_attention = call_family(family, "attention_modules", fg.module)
        graphs[gname] = GraphModel(fg.module, io, examples)
    first = next(iter(graphs.values()))
    recipe = Recipe(ModelConfig(name=name or _model_name(model, folder, family)), first.spec)
    return ResolvedModel(graphs, recipe, source, sha256)


def resolve_generic(model, example_inputs, spec=None, keep=None) -> ResolvedModel | None:
    """A plain ``nn.Module`` (no family) whose output is a dict, a namedtuple, a ModelOutput, nested, or holds None:
    a ResolvedModel whose graph is the module wrapped in ``NamedOutputs`` (outputs named by their keys and fields,
    dotted when nested; None values left out). ``keep`` or ``spec``'s output names choose which outputs stay.
    None when the output is a tensor or a flat tuple of tensors (the generic path names those ``output_<i>``)."""
    from ..lazy import lazy_import

    torch = lazy_import("torch", "exporting a model")
    if not isinstance(model, torch.nn.Module) or not isinstance(example_inputs, Mapping):
        return None
    import inspect

    params = list(inspect.signature(model.forward).parameters)
    examples = {k: np.asarray(v) for k, v in example_inputs.items()}
    if any(n not in params for n in examples):
        return None  # the generic path says which names are wrong
    order = sorted(examples, key=params.index)
    model.eval()
    from ..torchutil import call_module

    out = call_module(model, [torch.from_numpy(np.ascontiguousarray(examples[n])) for n in order], order)
    if isinstance(out, torch.Tensor) or (type(out) in (tuple, list) and all(isinstance(o, torch.Tensor) for o in out)):
        return None
    from .modules import named_outputs

    wanted = list(spec.output_names) if spec is not None else (list(keep) if keep is not None else None)
    wrapper, named = named_outputs(model, [torch.from_numpy(np.ascontiguousarray(examples[n])) for n in order], wanted)
    if spec is None:
        inputs = tuple(TensorSpec(n, str(examples[n].dtype), ("batch", *examples[n].shape[1:])) for n in order)
        outputs = tuple(TensorSpec(k, str(v.dtype).replace("torch.", ""), ("batch", *v.shape[1:])) for k, v in named.items())
        spec = IOSpec(inputs, outputs)
    recipe = Recipe(ModelConfig(name=type(model).__name__.lower()), spec)
    source = f"python {type(model).__module__}.{type(model).__qualname__}"
    return ResolvedModel({layout.MAIN: GraphModel(wrapper, spec, example_inputs)}, recipe, source, "")


def choose_outputs(fg: FamilyGraph, graph: str, family: str) -> tuple[TensorSpec, ...]:
    """Run the graph at two batch sizes; keep the outputs whose only batch-following axis is axis 0 (named "batch")."""
    from ..lazy import lazy_import

    torch = lazy_import("torch", "exporting a family model")

    shapes: list[dict[str, tuple]] = []
    dtypes: dict[str, str] = {}
    for i, batch in enumerate(PROBE_BATCHES):
        feeds = fg.feeds(batch, 100 + i)
        args = [torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in fg.inputs]
        with torch.no_grad():
            named = fg.module.outputs(*args)
        shapes.append({k: tuple(v.shape) for k, v in named.items()})
        dtypes.update({k: str(v.dtype).replace("torch.", "") for k, v in named.items()})
    a, b = shapes
    candidates = list(fg.keep) if fg.keep is not None else list(a)
    kept, dropped = [], []
    for k in candidates:
        if k not in a:
            raise EdgemmError(f"family {family!r}: graph {graph!r} has no output {k!r}; its outputs: {', '.join(a)}")
        why = batch_coupling(a[k], b[k], PROBE_BATCHES)
        if why is None:
            labels = fg.labels.get(k)
            labels = labels if labels and len(a[k]) == 2 and len(labels) == a[k][-1] else None
            kept.append(TensorSpec(k, dtypes[k], ("batch", *a[k][1:]), labels=labels))
        elif fg.keep is not None:
            raise EdgemmError(f"family {family!r}: output {k!r} of graph {graph!r} {why}; it cannot be compared or run "
                              "sample by sample: leave it out of the family's keep list")
        else:
            dropped.append(f"{k} ({why})")
    if dropped:
        logger.info("  graph %s: left out %s", graph, "; ".join(dropped))
    if not kept:
        raise EdgemmError(f"family {family!r}: graph {graph!r} has no output that follows the batch "
                          f"({'; '.join(dropped) or 'no tensor outputs'})")
    fg.module.output_names = tuple(t.name for t in kept)
    return tuple(kept)


def batch_coupling(shape_a: tuple, shape_b: tuple, batches: tuple[int, int]) -> str | None:
    """Why an output seen with ``shape_a`` at batch ``batches[0]`` and ``shape_b`` at ``batches[1]`` is not a
    per-sample output (None: axis 0 is the batch and no other axis changes with it)."""
    if len(shape_a) != len(shape_b) or not shape_a:
        return "has no batch axis"
    if (shape_a[0], shape_b[0]) != batches:
        return "does not have the batch on axis 0"
    coupled = [i for i in range(1, len(shape_a)) if shape_a[i] != shape_b[i]]
    if coupled:
        return f"has more than one axis that follows the batch (axes 0 and {', '.join(map(str, coupled))})"
    return None


def _split_examples(example_inputs, declared: Mapping[str, FamilyGraph], multi: bool) -> dict[str, Mapping]:
    """The user's example inputs per graph: ``{graph: {input: array}}``, or (several graphs) a flat
    ``{input: array}`` split by the graphs' input names."""
    if example_inputs is None:
        return {}
    if not isinstance(example_inputs, Mapping):
        raise SpecError(f"example_inputs must be a dict of input name -> array, not {type(example_inputs).__name__}")
    if not multi:
        return {next(iter(declared)): example_inputs}
    if set(example_inputs) <= set(declared):
        return dict(example_inputs)
    out: dict[str, dict] = {}
    for g, fg in declared.items():
        names = [t.name for t in fg.inputs]
        part = {k: v for k, v in example_inputs.items() if k in names}
        if part:
            missing = [n for n in names if n not in part]
            if missing:
                raise SpecError(f"example_inputs for graph {g!r} lack {', '.join(missing)}; give all of {', '.join(names)}")
            out[g] = part
    stray = set(example_inputs) - {t.name for fg in declared.values() for t in fg.inputs}
    if stray:
        raise SpecError(f"example_inputs name {', '.join(sorted(stray))}, which no graph takes; graphs and inputs: "
                        + "; ".join(f"{g}: {', '.join(t.name for t in fg.inputs)}" for g, fg in declared.items()))
    return out


def _split_specs(spec, declared: Mapping[str, FamilyGraph], multi: bool) -> dict[str, IOSpec]:
    if spec is None:
        return {}
    if isinstance(spec, IOSpec):
        if multi:
            raise SpecError(f"this model has graphs {', '.join(declared)}: pass spec={{graph name: IOSpec}}")
        return {next(iter(declared)): spec}
    if isinstance(spec, Mapping) and set(spec) <= set(declared):
        return dict(spec)
    raise SpecError(f"spec must be an IOSpec or {{graph name: IOSpec}} with graphs {', '.join(declared)}")


def _model_name(model: Any, folder: ModelFolder | None, family: Family) -> str:
    if folder is not None:
        return folder.path.resolve().name or family.name
    return type(model).__name__.lower()
