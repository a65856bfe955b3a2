"""The ``inc`` quantizer: Intel Neural Compressor 3.x static PTQ on the torch model (PT2E), exported to Q/DQ ONNX.

INC has no ONNX Runtime backend since 3.x; it quantizes the torch model instead:
``torch.export`` (INC's exporter) -> PT2E ``prepare`` with a static INT8 config (X86 inductor
quantizer: weights int8 symmetric per channel, activations asymmetric uint8 per tensor) ->
calibration on the CalibrationSource at batch 1 -> ``convert`` -> ``torch.onnx.export`` (dynamo,
dynamic batch) -> Q/DQ ONNX that onnxruntime and OpenVINO run. Asymmetric uint8 activations are not
TensorRT-valid, so the tensorrt target is refused.

With an accuracy budget, INC's ``autotune`` drives the search in two passes: the full INT8 config
and then each weighted layer kept float alone (first and last layer first, at most ``max_steps``);
if none is within budget, the layers whose float trial scored best are kept float cumulatively.
INC stops a pass at the first trial whose score ``1 - drop`` (each labelled head's task metric on the
evaluation split: top-1, or MAE for regression; worst head, against the fp32 reference) is within ``tolerable_loss = max_drop`` of the fp32
baseline, or keeps its best trial.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ...lazy import lazy_import
from ...data.calibration import CalibrationSource
from ...data.datasets import Samples
from ...errors import EdgemmError, on_command_line, setting
from ...iospec import IOSpec
from ...log import logger
from ...compare import Comparator
from ...metrics import BUDGET_TOLERANCE, Budget
from ...torchutil import dynamic_shapes, example_args, is_program, quiet

# edgemm calibration method -> INC activation observer (INC 3.x offers min/max and KL histograms).
ACT_ALGO = {"minmax": "minmax", "entropy": "kl"}
OPSET = 18


@dataclass
class IncBudget:
    samples: Samples  # labelled evaluation split
    reference: dict[str, float]  # the fp32 model's task metric per head (the accuracy reference)
    max_drop: float
    relative: bool
    max_steps: int = 12
    regression: tuple | None = None  # regression heads' own budget (value, relative); None: max_drop's

    def drop(self, metrics: dict[str, float], tasks: dict[str, str]) -> float:
        d = Budget(self.max_drop, self.relative, self.regression).drop(self.reference, metrics, tasks)
        return 0.0 if d is None else d


@dataclass
class IncResult:
    path: Path
    kept_float: list[dict] = field(default_factory=list)  # [{"reason", "nodes", "layers"}]
    trials: int = 1
    torch_drop: float | None = None  # drop of the chosen trial measured on the torch Q/DQ model


@contextlib.contextmanager
def _torch_state(torch, threads: int):
    """MHA fast path off (else attention stays one fused, unquantizable op in torch.export); our thread count."""
    mha = torch.backends.mha.get_fastpath_enabled()
    n = torch.get_num_threads()
    inc_log = logging.getLogger("neural_compressor")
    level = inc_log.level
    torch.backends.mha.set_fastpath_enabled(False)
    torch.set_num_threads(max(1, threads))
    inc_log.setLevel(logging.ERROR)  # INC logs every trial's config table at INFO/WARNING
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(mha)
        torch.set_num_threads(n)
        inc_log.setLevel(level)


def _weighted_layers(torch, model) -> list[str]:
    """Quantizable layers by module name, in definition order (attention blocks as one unit)."""
    nn = torch.nn
    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)
    out: list[str] = []
    for name, mod in model.named_modules():
        if isinstance(mod, kinds) and name and not any(name.startswith(p + ".") for p in out):
            out.append(name)
    return out


def inc_quantize(model, spec: IOSpec, calib: CalibrationSource, workdir: Path, *, method: str = "minmax",
                 threads: int = 2, budget: IncBudget | None = None,
                 progress: Callable[[str], None] = logger.info) -> IncResult:
    """Quantize ``model`` (an nn.Module) with INC and write ``workdir/inc.onnx`` (Q/DQ, dynamic batch)."""
    torch = lazy_import("torch")
    lazy_import("neural_compressor.torch.quantization", "--quantizer inc")
    from neural_compressor.torch.export import export as inc_export
    from neural_compressor.torch.quantization import INT8StaticQuantConfig, TuningConfig, autotune, convert, prepare

    if model is None or is_program(model):
        word = (lambda v: v) if on_command_line() else repr
        raise EdgemmError("the inc quantizer needs the model as an nn.Module (a recipe factory or the Python API), "
                          f"not a .pt2 program; use {setting('quantizer', word('ort'))} (or {word('trt')}/{word('nncf')}) "
                          "for a .pt2 input")
    if method not in ACT_ALGO:
        word = (lambda v: v) if on_command_line() else repr
        raise EdgemmError(f"the inc quantizer has no {method!r} calibration; use {setting('calibration_method', word('minmax'))} "
                          f"or {word('entropy')}")
    workdir.mkdir(parents=True, exist_ok=True)
    names = spec.input_names
    args = example_args(spec, {k: v[:2] for k, v in calib.feeds.items()})

    def tensors(feeds) -> list:
        return [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]

    def calibrate(prepared) -> None:
        with torch.no_grad():
            for batch in calib.iter_batches(1):
                prepared(*tensors(batch))

    def config(float_layers=()) -> "INT8StaticQuantConfig":
        c = INT8StaticQuantConfig(act_algo=ACT_ALGO[method])
        for name in float_layers:
            c.set_local(name, INT8StaticQuantConfig(w_dtype="fp32", act_dtype="fp32"))
        return c

    with _torch_state(torch, threads), quiet():
        exported = inc_export(model.eval(), args, dynamic_shapes=dynamic_shapes(spec))
        result = IncResult(workdir / "inc.onnx")
        if budget is None:
            q = convert(_prepare_calibrated(prepare, exported, config(), calibrate))
        else:
            q, result = _autotune(torch, model, exported, config, calibrate, budget, spec, result,
                                  TuningConfig, autotune, progress)
        try:
            torch.onnx.export(q, args, str(result.path), dynamic_shapes=dynamic_shapes(spec), dynamo=True,
                              external_data=False, input_names=names, output_names=spec.output_names, opset_version=OPSET)
        except Exception as exc:  # the dynamo exporter fails with many error types
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise EdgemmError(f"cannot export the INC-quantized model to ONNX ({type(exc).__name__}: {first}); "
                              "use --quantizer ort for this model") from exc
    for leftover in workdir.glob(result.path.name + ".data"):
        leftover.unlink()
    _fold_weight_quantize(result.path)
    return result


def _fold_weight_quantize(path: Path) -> int:
    """PT2E keeps weights fp32 behind a QuantizeLinear; store them as int8 initializers (DQ only) instead.
    Same values bit for bit (QuantizeLinear of a constant), a quarter of the weight bytes. Returns how many."""
    onnx = lazy_import("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for x in n.input:
            consumers[x] = consumers.get(x, 0) + 1
    folded, keep = 0, []
    for n in model.graph.node:
        if n.op_type != "QuantizeLinear" or len(n.input) < 3 or not all(x in inits for x in n.input[:3]):
            keep.append(n)
            continue
        x, scale, zp = (numpy_helper.to_array(inits[i]) for i in n.input[:3])
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if scale.ndim == 1 and scale.size > 1:
            shape = [1] * x.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(x / scale) + zp.astype(np.int32), info.min, info.max).astype(zp.dtype)
        model.graph.initializer.append(numpy_helper.from_array(q, n.output[0]))
        folded += 1
    if folded:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        used = {x for n in model.graph.node for x in n.input} | {o.name for o in model.graph.output}
        alive = [i for i in model.graph.initializer if i.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(alive)
        onnx.save(model, str(path))
    return folded


def _prepare_calibrated(prepare, exported, cfg, calibrate):
    prepared = prepare(exported, cfg)
    calibrate(prepared)
    return prepared


def _autotune(torch, model, exported, config, calibrate, budget: IncBudget, spec: IOSpec, result: IncResult,
              TuningConfig, autotune, progress):
    """Two INC autotune passes (the INC 2.x op-wise fallback shape): every layer kept float alone, then the
    most helpful ones kept float cumulatively. INC stops a pass at its first trial within budget."""
    layers = _weighted_layers(torch, model)
    comparator = Comparator(spec, budget.samples.feeds, budget.samples.labels)
    done: list[tuple[str, list[str], float]] = []  # (label, float layers, score) of every trial run

    def evaluate_with(trials):
        calls = []

        def evaluate(m) -> float:
            metrics = comparator.task_metrics(comparator.run_module(m))
            score = 1.0 - budget.drop(metrics, comparator.tasks)
            if calls:  # the first call of a pass is INC's fp32 baseline
                label, kept = trials[len(calls) - 1]
                done.append((label, kept, score))
                progress(f"  inc trial {len(done)} ({label}{' float' if kept else ''}): drop {1.0 - score:+.4f}")
            calls.append(score)
            return score

        return evaluate

    def run(trials):
        configs = [config(kept) for _, kept in trials]
        tune = TuningConfig(config_set=configs, tolerable_loss=budget.max_drop + BUDGET_TOLERANCE, max_trials=len(configs))
        first = len(done)
        q = autotune(exported, tune, eval_fn=evaluate_with(trials), run_fn=calibrate)
        scores = [d[2] for d in done[first:]]
        return q, first + _chosen_trial(scores, budget.max_drop)

    ordered = layers[:1] + layers[-1:] + layers[1:-1] if len(layers) > 1 else layers
    singles = [("all layers int8", [])] + [(name, [name]) for name in ordered[: budget.max_steps] if len(layers) > 1]
    q, chosen = run(singles)
    if 1.0 - done[chosen][2] > budget.max_drop + BUDGET_TOLERANCE and len(layers) > 2:
        ranked = [d[1][0] for d in sorted(done[1:], key=lambda d: -d[2])]
        cumulative, acc = [], []
        for name in ranked[: budget.max_steps]:
            acc = acc + [name]
            if 1 < len(acc) < len(layers):  # never every weighted layer float: the fp32 model under an INT8 name
                cumulative.append((" + ".join(acc), list(acc)))
        if cumulative:
            q2, chosen2 = run(cumulative)
            if done[chosen2][2] > done[chosen][2]:
                q, chosen = q2, chosen2
            else:  # the best single trial stays the answer; INC's last pass returned its own best
                q, _ = run([done[chosen][:2]])
                done.pop()
    label, kept, score = done[chosen]
    result.trials = len(done)
    result.torch_drop = 1.0 - score
    if kept:
        result.kept_float = [{"reason": f"accuracy: INC autotune trial {chosen + 1} of {len(done)} ({label} float); "
                                        f"drop {result.torch_drop:+.4f} on the torch Q/DQ model",
                              "nodes": len(kept), "layers": sorted(kept)}]
    return q, result


def _chosen_trial(scores: list[float], max_drop: float) -> int:
    """The trial INC keeps: the first within the tolerable loss (where it stops), else the best score (first of ties)."""
    ok = [i for i, s in enumerate(scores) if 1.0 - s <= max_drop + BUDGET_TOLERANCE]
    return ok[0] if ok else int(np.argmax(scores))
