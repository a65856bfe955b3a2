"""Turn a call of ``edgemm.export`` (or the CLI's flags, or a recipe) into a ``PipelineConfig``, then run it.

``edgemm.export()`` and ``edgemm export`` are thin layers over :func:`configure` + ``pipeline.run_pipeline``.
Every setting goes through the options seam (``edgemm.options``): a section's value is, from lowest to
highest precedence, its options class's defaults, the recipe's table, a typed config passed to the API
(``export=``, ``quantize=``, ``prune_options=``, ``verify_config=``), ``options={section: ...}``, then the
single keyword arguments (``targets=``, ``max_drop=``, ...; the CLI's flags land here). An options instance
replaces the section; a dict overrides the keys it names. Every value is validated by the section's class.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .bundle import Bundle
from .data.generated import check_training, resolve_training
from .errors import ConfigError, close_match_hint, setting, switch
from .iospec import IOSpec
from .options import Options, build_options
from .pipeline import PipelineConfig, ResolvedModel, resolve_model, run_pipeline
from .recipe import DataConfig, Recipe
from .stages.options.export import ExportOptions
from .stages.options.prune import PruneOptions
from .stages.options.qat import QATOptions
from .stages.options.quantize import QuantizeOptions
from .stages.options.verify import VerifyOptions

# sections whose options class is fixed; "compile.<backend>" and "stages.<name>" are found in their registries
STAGE_SECTIONS: dict[str, type[Options]] = {"export": ExportOptions, "verify": VerifyOptions, "quantize": QuantizeOptions,
                                            "prune": PruneOptions, "qat": QATOptions}


def options_class(section: str, where: str = "options") -> type[Options]:
    """The options class of a section name: a stage's (``quantize``), a backend's (``compile.openvino``) or a
    registered stage's (``stages.<name>``)."""
    if section in STAGE_SECTIONS:
        return STAGE_SECTIONS[section]
    kind, _, name = section.partition(".")
    if kind == "compile" and name:
        from .backends.registry import get_backend, target_names

        if name not in target_names():
            raise ConfigError(f"{where}: unknown backend in section {section!r}{close_match_hint(name, target_names())}; "
                              f"backends: {', '.join(target_names())}")
        cls = get_backend(name).options
        if cls is None:
            raise ConfigError(f"{where}: backend {name!r} has no compile options (section {section!r})")
        return cls
    if kind == "stages" and name:
        from .stages.registry import get_stage

        cls = get_stage(name).options
        if cls is None:
            raise ConfigError(f"{where}: stage {name!r} takes no options (section {section!r})")
        return cls
    known = [*STAGE_SECTIONS, "compile.<backend>", "stages.<name>"]
    raise ConfigError(f"{where}: unknown options section {section!r}{close_match_hint(section, STAGE_SECTIONS)}; "
                      f"sections: {', '.join(known)}")


def _apply(sections: dict[str, Options], section: str, value, where: str) -> None:
    """An options instance replaces ``section``; a mapping overrides the keys it names."""
    if value is None:
        return
    cls = options_class(section, where)
    if isinstance(value, Options):
        sections[section] = build_options(cls, value, where)
    else:
        sections[section] = build_options(cls, value, where, base=sections.get(section))


def _split(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):  # "onnxruntime,openvino" from the API is a list of one or more targets
        return tuple(t.strip() for t in value.split(",") if t.strip())
    return tuple(value)


def make_ptq_config(recipe: Recipe, targets, quantize: QuantizeOptions, *, policy=None, threads=None):
    """PTQConfig from the resolved [quantize] options, the [precision] policy (or ``policy``) and ``threads``."""
    from .stages.quantize import PrecisionPolicy, PTQConfig, check_quantizers
    from .stages.verify import default_threads

    chosen = quantize.quantizers(targets)
    recipe_pairs = recipe.quantize.quantizer if isinstance(recipe.quantize.quantizer, dict) else {}
    unknown = [t for t, q in chosen.items() if t not in targets and recipe_pairs.get(t) != q]  # the recipe may name skipped targets
    if unknown:
        raise ConfigError(f"{setting('quantizer')} names target(s) {unknown} that are not exported; targets: {', '.join(targets)}")
    drop, relative = quantize.budget
    cfg = PTQConfig(
        method=quantize.method, quantizers={t: q for t, q in chosen.items() if t in targets}, max_drop=drop, relative=relative,
        speed_guard=quantize.speed_guard, policy=policy or recipe.precision or PrecisionPolicy(), threads=threads or default_threads(),
    )
    check_quantizers(targets, cfg)
    return cfg


def configure(
    model_or_path,
    example_inputs: Mapping[str, np.ndarray] | None = None,
    spec: IOSpec | None = None,
    *,
    output: str | os.PathLike,
    int8: bool = False,
    qat: bool = False,
    prune=None,
    targets: Sequence[str] | str | None = None,
    calibration: str | os.PathLike | None = None,
    evaluation: str | os.PathLike | None = None,
    training: str | os.PathLike | Mapping[str, Any] | None = None,
    name: str | None = None,
    verify: bool = True,
    threads: int | None = None,
    stages: Sequence[str] = (),
    options: Mapping[str, Options | Mapping[str, Any]] | None = None,
    export: ExportOptions | Mapping[str, Any] | None = None,
    quantize: QuantizeOptions | Mapping[str, Any] | None = None,
    prune_options: PruneOptions | Mapping[str, Any] | None = None,
    verify_config: VerifyOptions | Mapping[str, Any] | None = None,
    opset: int | None = None,
    exporter: str | None = None,
    max_drop: float | str | None = "recipe",
    quantizer: Mapping[str, str] | str | None = None,
    calibration_method: str | None = None,
    speed_guard: bool | None = None,
    policy=None,
    axes: Mapping[str, Any] | None = None,
    resolved: ResolvedModel | None = None,
) -> tuple[ResolvedModel, PipelineConfig]:
    """The model resolved and the ``PipelineConfig`` ``edgemm.export`` runs (arguments as :func:`export`).

    ``resolved``: an already resolved model (skips loading it again)."""
    resolved = resolved or resolve_model(model_or_path, example_inputs, spec)
    if axes:
        _apply_axes(resolved, axes)
    recipe = resolved.recipe
    sections = dict(recipe.sections())
    for section, value, where in (("export", export, "export="), ("quantize", quantize, "quantize="),
                                  ("prune", _drop_none(prune_options), "prune_options="), ("verify", verify_config, "verify_config=")):
        _apply(sections, section, value, f"edgemm.export({where})")
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"edgemm.export(options=): {options!r} is not allowed: expected a mapping of section name -> "
                          "options object or dict, e.g. {\"quantize\": {\"max_drop\": 0.02}}")
    for section, value in (options or {}).items():
        _apply(sections, str(section), value, f"edgemm.export(options[{section!r}])")
    single = [("export", "targets", _split(targets), "targets"), ("export", "opset", opset, "opset"),
              ("export", "exporter", exporter, "exporter"), ("quantize", "quantizer", quantizer, "quantizer"),
              ("quantize", "method", calibration_method, "calibration_method"), ("quantize", "speed_guard", speed_guard, "speed_guard")]
    given = [(section, key, value, arg) for section, key, value, arg in single if value is not None]
    if max_drop != "recipe":  # None is a value here: no budget
        given.append(("quantize", "max_drop", max_drop, "max_drop"))
    if prune is not None and not isinstance(prune, bool):
        given.append(("prune", "ratio", prune, "prune"))
    for section, key, value, arg in given:
        _apply(sections, section, {key: value}, f"edgemm.export({arg}=)")

    export_cfg: ExportOptions = sections["export"]
    calib_path = calibration if isinstance(calibration, (str, os.PathLike)) else None  # else an iterable of feeds
    data = DataConfig(
        calibration=str(calib_path) if calib_path else (str(recipe.resolve(recipe.data.calibration)) if recipe.data.calibration else None),
        evaluation=str(evaluation) if evaluation else (str(recipe.resolve(recipe.data.evaluation)) if recipe.data.evaluation else None),
        training=_training(training) if training is not None else resolve_training(recipe.data.training, recipe.resolve),
    )
    int8 = bool(int8 or qat)  # QAT produces INT8 artifacts; PTQ ones are kept beside them for comparison
    ptq = make_ptq_config(recipe, export_cfg.targets, sections["quantize"], policy=policy, threads=threads) if int8 else None
    prune_cfg = None
    prune_opts = sections.get("prune")
    if prune is False:
        sections.pop("prune", None)
    elif prune_opts is not None and (prune_opts.ratio is not None or prune_opts.sparsity is not None):
        from .stages.prune import parse_prune

        prune_cfg = parse_prune(prune_opts, recipe.spec.input_names if len(resolved.graphs) == 1 else None)
    elif prune is True:
        raise ConfigError("edgemm.export(prune=True): give the ratio: 0.5, 'image=0.5,audio=0.3' or '2:4' (or a recipe [prune] ratio)")
    _check_model_file(resolved, qat=qat, prune=prune_cfg, quantizer=sections["quantize"].quantizer if int8 else None)
    wanted = tuple(dict.fromkeys([*recipe.stages, *_stage_names(stages)]))
    if wanted:
        from .stages.registry import get_stage

        for s in wanted:
            get_stage(s)  # unknown stage: one line with a hint, before any work
    cfg = PipelineConfig(
        output=Path(output), name=name or recipe.model.name, export=export_cfg, data=data, verify=sections["verify"],
        run_verify=verify, int8=int8, qat=bool(qat), prune=prune_cfg, ptq=ptq,
        calibration=calibration if calib_path is None and calibration is not None else data.calibration,
        threads=threads, example_inputs=example_inputs, options=sections, stages=wanted,
    )
    return resolved, cfg


def _check_model_file(resolved: ResolvedModel, *, qat, prune, quantizer) -> None:
    """A model given as an ONNX file has no torch model: what needs one is refused before any work."""
    from .modelfile import is_model_file

    model = resolved.model
    if not is_model_file(model):
        return
    needs_torch = [(switch("qat"), bool(qat)), (setting("prune"), prune is not None),
                   (setting("quantizer", "inc"), quantizer == "inc" or isinstance(quantizer, Mapping) and "inc" in quantizer.values())]
    for what, given in needs_torch:
        if given:
            raise ConfigError(f"{what} works on the PyTorch model, and {model.name} is an ONNX file (edgemm quantizes it "
                              f"after training with the ONNX quantizers); drop {what}, or export the torch model instead")


def _drop_none(values):
    """``prune_options`` as the CLI passed it before the seam: keys with None mean "not given"."""
    if isinstance(values, Mapping):
        return {k: v for k, v in values.items() if v is not None}
    return values


def _stage_names(stages) -> list[str]:
    if isinstance(stages, str):
        return [s.strip() for s in stages.split(",") if s.strip()]
    if not all(isinstance(s, str) for s in stages):
        raise ConfigError(f"edgemm.export(stages=): {stages!r} is not allowed: expected stage names, e.g. stages=[\"my-stage\"]")
    return list(stages)


def export(
    model_or_path,
    example_inputs: Mapping[str, np.ndarray] | None = None,
    spec: IOSpec | None = None,
    *,
    output: str | os.PathLike,
    int8: bool = False,
    qat: bool = False,
    prune=None,
    targets: Sequence[str] | str | None = None,
    calibration: str | os.PathLike | None = None,
    calib: str | os.PathLike | None = None,
    evaluation: str | os.PathLike | None = None,
    training: str | os.PathLike | Mapping[str, Any] | None = None,
    name: str | None = None,
    verify: bool = True,
    threads: int | None = None,
    stages: Sequence[str] = (),
    options: Mapping[str, Options | Mapping[str, Any]] | None = None,
    export: ExportOptions | Mapping[str, Any] | None = None,
    quantize: QuantizeOptions | Mapping[str, Any] | None = None,
    prune_options: PruneOptions | Mapping[str, Any] | None = None,
    verify_config: VerifyOptions | Mapping[str, Any] | None = None,
    opset: int | None = None,
    exporter: str | None = None,
    max_drop: float | str | None = "recipe",
    quantizer: Mapping[str, str] | str | None = None,
    calibration_method: str | None = None,
    speed_guard: bool | None = None,
    policy=None,
    axes: Mapping[str, Any] | None = None,
) -> Bundle:
    """Export a model to a verified bundle at ``output`` (written to a temp dir, renamed when complete).

    ``model_or_path``: an ``nn.Module``, a ``torch.export`` ``.pt2`` file, a recipe ``.toml`` or
    ``{graph name: module}``. ``int8=True`` adds INT8 artifacts for every target (``calibration``: an .npz
    file/dir, an iterable of feeds, or "synthetic"; ``calib=`` is the same). If the accuracy budget cannot be met, the bundle is
    written with the best model found and ``BudgetNotMet`` is raised. ``qat=True`` fine-tunes with fake-quant
    (PTQ artifacts are kept beside the QAT ones). ``prune``: ``0.5``, ``"image=0.5,audio=0.3"`` or ``"2:4"``
    (structured pruning + distillation fine-tune on the training split); the original model stays the accuracy
    reference. ``training``: the fine-tuning split of pruning and QAT (an .npz file/dir, or
    ``{"generator": "module:callable", ...}`` as a recipe's [data.training]; default: the recipe's, else the
    calibration data). ``stages``: extra stages by name (``["my-stage"]``: plugin stages, see examples/stage_plugin).

    ``options``: section -> options object or dict, the same tables a recipe has::

        options={"quantize": QuantizeOptions(max_drop=0.02), "prune": {"epochs": 3},
                 "compile.openvino": {"performance_hint": "THROUGHPUT"}, "stages.<name>": {...}}

    Also accepted (keyword arguments): typed configs ``export=`` (ExportOptions), ``quantize=``
    (QuantizeOptions), ``prune_options=`` (PruneOptions or a dict of [prune] keys), ``verify_config=``
    (VerifyOptions); and single settings ``opset``, ``exporter``, ``max_drop`` (0.01 = 1 point absolute, "2%"
    relative, None = no budget), ``quantizer`` (a name or {target: name}), ``calibration_method``,
    ``speed_guard``, ``policy`` (a PrecisionPolicy), which land on the same option fields.

    ``axes``: the sizes each named dynamic axis may take, ``{"batch": (1, 1, 16)}`` (min, opt, max) or
    ``{"batch": {"max": 16}}``; used by the export (torch.export's ranges), compile (TensorRT profiles), bench
    and the runtime's feed check. Default: 1..4096, opt 1, or the recipe's ``[axes]``.
    """
    if calib is not None:  # the CLI's name (--calib), kept as an alias
        if calibration is not None:
            raise ConfigError("edgemm.export(): give calibration= or calib= (the same thing), not both")
        calibration = calib
    resolved, cfg = configure(model_or_path, example_inputs, spec, output=output, int8=int8, qat=qat, prune=prune,
                              targets=targets, calibration=calibration, evaluation=evaluation, training=training, name=name,
                              verify=verify, threads=threads, stages=stages, options=options, export=export, quantize=quantize,
                              prune_options=prune_options, verify_config=verify_config, opset=opset, exporter=exporter,
                              max_drop=max_drop, quantizer=quantizer, calibration_method=calibration_method,
                              speed_guard=speed_guard, policy=policy, axes=axes)
    return run_pipeline(resolved, cfg)


def _apply_axes(resolved: ResolvedModel, axes: Mapping[str, Any]) -> None:
    """Set the ranges of named dynamic axes on every graph that has them; a name no graph has is an error."""
    from .iospec import AxisRange

    if not isinstance(axes, Mapping):
        raise ConfigError(f"axes= must map axis names to (min, opt, max), not {type(axes).__name__}")
    ranges = {k: AxisRange.from_value(v, f"axes[{k!r}]") for k, v in axes.items()}
    seen: set[str] = set()
    for gm in resolved.graphs.values():
        named = {d for t in gm.spec.inputs + gm.spec.outputs for d in t.shape if isinstance(d, str)}
        mine = {k: r for k, r in ranges.items() if k in named}
        seen |= set(mine)
        if mine:
            gm.spec = gm.spec.with_axes(mine)
    unknown = sorted(set(ranges) - seen)
    if unknown:
        names = sorted({a for gm in resolved.graphs.values() for a in gm.spec.axis_names})
        raise ConfigError(f"axes: {', '.join(map(repr, unknown))} is not a dynamic axis of the model"
                          f"{close_match_hint(unknown[0], names)}; its named axes: {', '.join(names) or 'none'}")


def _training(value):
    """``training=`` of the API: a path, or a generator table (paths relative to the working directory)."""
    check_training(value, "training=")
    return resolve_training(value, lambda p: Path(p).expanduser().resolve())
