"""Turn a call of ``edgemm.export`` (or the CLI's flags, or a recipe) into a ``PipelineConfig``, then run it.

``edgemm.export()`` and ``edgemm export`` are thin layers over ``configure`` + ``pipeline.run_pipeline``.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .bundle import Bundle
from .data.generated import check_training, resolve_training
from .errors import EdgemmError
from .iospec import IOSpec
from .pipeline import PipelineConfig, resolve_model, run_pipeline
from .recipe import DataConfig, Recipe, VerifyConfig, parse_max_drop


def _split(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):  # "onnxruntime,openvino" from the API is a list of one or more targets
        return tuple(t.strip() for t in value.split(",") if t.strip())
    return tuple(value)


def make_ptq_config(recipe: Recipe, targets, *, max_drop="recipe", quantizer=None, calibration_method=None,
                    speed_guard=None, policy=None, threads=None):
    """PTQConfig from the recipe's [quantize]/[precision] with the caller's overrides (None / "recipe": keep)."""
    from .stages.quantize import PrecisionPolicy, PTQConfig, check_quantizers
    from .stages.verify import default_threads

    qc = recipe.quantize
    if isinstance(quantizer, str):
        quantizer = {t: quantizer for t in targets}
    drop, relative = parse_max_drop(qc.max_drop if max_drop == "recipe" else max_drop)
    cfg = PTQConfig(
        method=calibration_method or qc.method, quantizers={**dict(qc.quantizer), **dict(quantizer or {})},
        max_drop=drop, relative=relative, speed_guard=qc.speed_guard if speed_guard is None else speed_guard,
        policy=policy or recipe.precision or PrecisionPolicy(), threads=threads or default_threads(),
    )
    unknown = [t for t in dict(quantizer or {}) if t not in targets]  # the recipe may name targets this export skips
    if unknown:
        raise EdgemmError(f"--quantizer names target(s) {unknown} that are not exported; targets: {', '.join(targets)}")
    check_quantizers(targets, cfg)
    return cfg


def export(
    model_or_path,
    example_inputs: Mapping[str, np.ndarray] | None = None,
    spec: IOSpec | None = None,
    *,
    output: str | os.PathLike,
    int8: bool = False,
    qat: bool = False,
    prune=None,
    targets: Sequence[str] | None = None,
    calibration: str | os.PathLike | None = None,
    evaluation: str | os.PathLike | None = None,
    training: str | os.PathLike | Mapping[str, Any] | None = None,
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
    prune_options: Mapping[str, Any] | None = None,
) -> Bundle:
    """Export a model to a verified bundle at ``output`` (written to a temp dir, renamed when complete).

    ``model_or_path``: an ``nn.Module``, a ``torch.export`` ``.pt2`` file or a recipe ``.toml``.
    ``int8=True`` adds INT8 artifacts for every target (``calibration``: an .npz file/dir, an
    iterable of feeds, or "synthetic"); ``max_drop`` is the accuracy budget on the evaluation split
    (0.01 = 1 point absolute, "2%" relative, None = no budget). If the budget cannot be met, the
    bundle is written with the best model found and ``BudgetNotMet`` is raised. ``qat=True``
    fine-tunes with fake-quant (PTQ artifacts are kept beside the QAT ones). ``prune``: ``0.5``,
    ``"image=0.5,audio=0.3"`` or ``"2:4"`` (structured pruning + distillation fine-tune on the training split;
    ``prune_options``: ``criterion``, ``epochs``, ``finetune_minutes``, ... of ``edgemm.stages.prune.PruneConfig``);
    the original model stays the accuracy reference. ``training``: the fine-tuning split of pruning and QAT
    (an .npz file/dir, or ``{"generator": "module:callable", ...}`` as a recipe's [data.training]; default: the
    recipe's, else the calibration data).
    """
    resolved = resolve_model(model_or_path, example_inputs, spec)
    recipe = resolved.recipe
    export_cfg = recipe.export
    if targets is not None:
        export_cfg = replace(export_cfg, targets=_split(targets))
    if opset is not None:
        export_cfg = replace(export_cfg, opset=opset)
    if exporter is not None:
        export_cfg = replace(export_cfg, exporter=exporter)
    calib_path = calibration if isinstance(calibration, (str, os.PathLike)) else None  # else an iterable of feeds
    data = DataConfig(
        calibration=str(calib_path) if calib_path else (str(recipe.resolve(recipe.data.calibration)) if recipe.data.calibration else None),
        evaluation=str(evaluation) if evaluation else (str(recipe.resolve(recipe.data.evaluation)) if recipe.data.evaluation else None),
        training=_training(training) if training is not None else resolve_training(recipe.data.training, recipe.resolve),
    )
    int8 = int8 or qat  # QAT produces INT8 artifacts; PTQ ones are kept beside them for comparison
    ptq = None
    if int8:
        ptq = make_ptq_config(recipe, export_cfg.targets, max_drop=max_drop, quantizer=quantizer,
                              calibration_method=calibration_method, speed_guard=speed_guard, policy=policy, threads=threads)
    prune_cfg = None
    if (prune is not None and prune is not False) or recipe.prune:
        prune_cfg = _prune_config(prune, recipe, prune_options)
    cfg = PipelineConfig(
        output=Path(output), name=name or recipe.model.name, export=export_cfg, data=data, verify=verify_config or recipe.verify,
        run_verify=verify, int8=int8, qat=qat, prune=prune_cfg, ptq=ptq,
        calibration=calibration if calib_path is None and calibration is not None else data.calibration,
        threads=threads, example_inputs=example_inputs,
    )
    return run_pipeline(resolved, cfg)


def _training(value):
    """``training=`` of the API: a path, or a generator table (paths relative to the working directory)."""
    check_training(value, "training=")
    return resolve_training(value, lambda p: Path(p).expanduser().resolve())


def _prune_config(prune, recipe: Recipe, overrides: Mapping[str, Any] | None = None):
    """``--prune`` / ``prune=`` (a ratio, ``image=0.5,audio=0.3``, ``2:4``) over the recipe's [prune] table."""
    from .stages.prune import parse_prune

    table = dict(recipe.prune or {})
    if prune is not None and prune is not True:
        table["ratio"] = prune
    table.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return parse_prune(table, recipe.spec.input_names)


