"""Deployment recipes (``export/*.toml``) -> typed configs.

```toml
[model]
name = "avnet"
factory = "edgemm.zoo.avnet:build"        # importable callable returning an nn.Module ...
checkpoint = "../edgemm/zoo/checkpoints/avnet.pt"  # ... called as factory(checkpoint=...)
# path = "model.pt2"                       # ... or a torch.export program instead of a factory
# path = "model.onnx"                      # ... or an fp32 ONNX: [[inputs]] then add only modality + preprocessing

[[inputs]]                                  # the IOSpec (see edgemm.iospec)
name = "image"
modality = "image"
dtype = "float32"
shape = ["batch", 3, 64, 64]
[inputs.preprocessing]
size = [64, 64]

[[outputs]]
name = "digit"
labels = ["0", "1", ...]

# [graphs.image]                            # or, for several graphs in one bundle, a table per graph instead of
# factory = "pkg.towers:build_image"        # [[inputs]]/[[outputs]]: its factory (+ checkpoint, default [model]'s)
# [[graphs.image.inputs]] ...               # and its [[graphs.<name>.inputs]] / [[graphs.<name>.outputs]]

[axes]                                      # optional: the sizes each named dynamic axis may take
batch = { min = 1, opt = 1, max = 64 }      # (default 1..4096, opt 1): export ranges, TensorRT profiles, feed checks

[data]
calibration = "../calibration_data/avmnist/calib.npz"
evaluation = "../calibration_data/avmnist/eval.npz"
training = "../calibration_data/avmnist/train.npz"   # fine-tuning (prune, QAT); or a [data.training] generator table

[export]                                    # every table below is an options class (edgemm.options): its keys
targets = ["onnxruntime", "openvino"]       # are typed and checked, and each has a CLI flag and an API form
opset = 18

[verify]
parity_samples = 32

[quantize]                                  # --int8: budget, calibration method, quantizers (QuantizeOptions)
max_drop = 0.01
[precision]                                 # parts kept float (PrecisionPolicy)
[prune]                                     # --prune: ratio, criterion, fine-tune settings (PruneOptions)
[qat]                                       # --qat: fine-tune settings (QATOptions)
[compile.openvino]                          # a backend's compile options (its Backend.options class)
performance_hint = "LATENCY"
[stages]                                    # extra stages by name (the edgemm.stages registry) ...
enable = ["my-stage"]
[stages.my-stage]                           # ... and their options (the stage's options class)
```
Relative paths are relative to the recipe file. Unknown keys are errors with a close-match hint; a value
of the wrong type, out of range, not finite or not one of its choices is one ``ConfigError`` line naming
the key, the value and what is allowed.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError, EdgemmError, RecipeError, SpecError, close_match_hint
from .iospec import IOSpec
from .options import Options, build_options, option, options
from .stages.options.export import ExportConfig, ExportOptions  # noqa: F401  (ExportConfig: the name before the seam)
from .stages.options.prune import ALL, FUSION, PruneOptions
from .stages.options.qat import QATOptions
from .stages.options.quantize import QuantizeConfig, QuantizeOptions, parse_max_drop  # noqa: F401
from .stages.options.verify import VerifyConfig, VerifyOptions  # noqa: F401
from .usercode import import_callable  # noqa: F401  (the recipe's factory is the user's own code)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@options("model")
class ModelConfig(Options):
    name: str = option("model", help="the model's name (bundle manifest, reports)")
    factory: str | None = option(None, help="\"package.module:callable\" returning the nn.Module, called as factory(checkpoint=...)")
    checkpoint: str | None = option(None, help="the checkpoint passed to the factory (relative to the recipe)")
    path: str | None = option(None, help="a .pt2 torch.export program, or an fp32 .onnx model, instead of a factory")


@options("data")
class DataConfig(Options):
    calibration: str | None = option(None, help="calibration samples (.npz file or folder)")
    evaluation: str | None = option(None, help="labelled evaluation samples (.npz file or folder)")
    # pruning / QAT fine-tuning data (default: the calibration data): a path or a [data.training] table with
    # generator = "module:callable" (edgemm.data.generated)
    training: str | dict[str, Any] | None = option(None, help="fine-tuning split of pruning and QAT: a sample file or a "
                                                              "[data.training] generator table")

    def __post_init__(self):
        from .data.generated import check_training

        check_training(self.training)


def parse_precision(table: dict, source: str):
    """[precision] part = "fp32" | "int8", exclude_ops = [...], exclude_nodes = [...] -> PrecisionPolicy."""
    from .stages.quantize.ptq import PrecisionPolicy

    if not isinstance(table, dict):
        raise RecipeError(f"{source}: [precision] must be a table, e.g. [precision] audio = \"fp32\"")
    float_parts, ops, nodes = [], (), ()
    for key, value in table.items():
        if key in ("exclude_ops", "exclude_nodes"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{source} [precision] {key} = {value!r} is not allowed: expected a list of strings")
            if key == "exclude_ops":
                ops = tuple(value)
            else:
                nodes = tuple(value)
        elif value in ("fp32", "fp16"):
            float_parts.append(key)
        elif value != "int8":
            raise ConfigError(f"{source} [precision] {key} = {value!r} is not allowed: use \"fp32\" (keep float) or \"int8\"")
    return PrecisionPolicy(tuple(float_parts), ops, nodes)


@dataclass(frozen=True)
class GraphRecipe:
    """One graph of a multi-graph recipe (``[graphs.<name>]``): its factory (called as ``factory(checkpoint=...)``
    with the graph's or ``[model]``'s checkpoint) and its IOSpec (``[[graphs.<name>.inputs]]`` / ``outputs``)."""

    name: str
    factory: str
    spec: IOSpec
    checkpoint: str | None = None


@dataclass(frozen=True)
class Recipe:
    model: ModelConfig
    spec: IOSpec
    data: DataConfig = field(default_factory=DataConfig)
    export: ExportOptions = field(default_factory=ExportOptions)
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    quantize: QuantizeOptions = field(default_factory=QuantizeOptions)
    precision: Any = None  # PrecisionPolicy
    prune: PruneOptions | None = None  # the [prune] table (None: no pruning unless asked for)
    qat: QATOptions = field(default_factory=QATOptions)
    compile: Mapping[str, Options] = field(default_factory=dict)  # backend name -> its [compile.<backend>] options
    stages: tuple[str, ...] = ()  # [stages] enable: extra stages by name
    stage_options: Mapping[str, Options] = field(default_factory=dict)  # stage name -> its [stages.<name>] options
    base_dir: Path = Path(".")
    source: str = ""
    graphs: Mapping[str, GraphRecipe] = field(default_factory=dict)  # [graphs.<name>]: one bundle, several graphs

    def resolve(self, rel: str | None) -> Path | None:
        if rel is None:
            return None
        p = Path(rel).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def sections(self) -> dict[str, Options]:
        """Every options table of the recipe by section name (``"quantize"``, ``"compile.openvino"``, ``"stages.x"``)."""
        out: dict[str, Options] = {"export": self.export, "verify": self.verify, "quantize": self.quantize, "qat": self.qat}
        if self.prune is not None:
            out["prune"] = self.prune
        out.update({f"compile.{name}": o for name, o in self.compile.items()})
        out.update({f"stages.{name}": o for name, o in self.stage_options.items()})
        return out

    def build_graphs(self) -> dict:
        """``{graph name: nn.Module}`` of a multi-graph recipe, each from its factory and checkpoint."""
        out = {}
        for name, g in self.graphs.items():
            out[name] = self._call(g.factory, g.checkpoint or self.model.checkpoint, f"[graphs.{name}]")
        return out

    def _call(self, factory: str, checkpoint: str | None, where: str):
        fn = import_callable(factory)
        kwargs = {}
        if checkpoint:
            ckpt = self.resolve(checkpoint)
            if not ckpt.is_file():
                raise RecipeError(f"checkpoint {ckpt} not found (recipe {self.source} {where}); fix its checkpoint or train it first")
            kwargs["checkpoint"] = ckpt
        return fn(**kwargs)

    def build_model(self):
        """The user's nn.Module (factory + checkpoint) or the loaded .pt2 program's module."""
        if self.model.path:
            from .modelfile import is_model_file_path, open_model_file

            if is_model_file_path(self.model.path):  # the user's ONNX: the fp32 reference itself (no torch module)
                return open_model_file(self.resolve(self.model.path))
            from .torchutil import load_pt2

            return load_pt2(self.resolve(self.model.path))
        if not self.model.factory:
            raise RecipeError(f"{self.source}: [model] needs 'factory' (\"module:callable\") or 'path' (a .pt2 file)")
        return self._call(self.model.factory, self.model.checkpoint, "[model]")


def _table(raw: dict, section: str, source: str) -> dict:
    table = raw.get(section, {})
    if not isinstance(table, dict):
        raise RecipeError(f"{source}: [{section}] must be a table, not {table!r}")
    return table


def _typed(cls, raw: dict, section: str, source: str):
    return build_options(cls, _table(raw, section, source), f"{source} [{section}]")


def _prune(raw: dict, source: str) -> PruneOptions | None:
    if "prune" not in raw:
        return None
    table = raw["prune"]
    if not isinstance(table, dict):
        raise RecipeError(f"{source}: [prune] must be a table, e.g. [prune] ratio = 0.5")
    return build_options(PruneOptions, table, f"{source} [prune]")


def _compile(raw: dict, source: str) -> dict[str, Options]:
    """[compile.<backend>] tables through each backend's options class."""
    from .backends.registry import get_backend, target_names

    out = {}
    for name, table in _table(raw, "compile", source).items():
        targets = target_names()
        if name not in targets:
            raise RecipeError(f"{source}: unknown backend in [compile.{name}]{close_match_hint(name, targets)}; "
                              f"backends: {', '.join(targets)}")
        cls = get_backend(name).options
        if cls is None:
            raise RecipeError(f"{source}: [compile.{name}]: backend {name!r} has no compile options; remove the table")
        if not isinstance(table, dict):
            raise RecipeError(f"{source}: [compile.{name}] must be a table")
        out[name] = build_options(cls, table, f"{source} [compile.{name}]")
    return out


def _stages(raw: dict, source: str) -> tuple[tuple[str, ...], dict[str, Options]]:
    """[stages] enable = [...] and [stages.<name>] option tables (through each stage's options class)."""
    table = dict(_table(raw, "stages", source))
    if not table:
        return (), {}
    from .stages.registry import get_stage

    enable = table.pop("enable", [])
    if not isinstance(enable, list) or not all(isinstance(n, str) for n in enable):
        raise ConfigError(f"{source} [stages] enable = {enable!r} is not allowed: expected a list of stage names, "
                          "e.g. enable = [\"my-stage\"]")
    for name in enable:
        _stage_or_error(get_stage, name, source)
    opts = {}
    for name, sub in table.items():
        if not isinstance(sub, dict):
            raise RecipeError(f"{source}: unknown key {name!r} in [stages]; [stages] holds enable = [...] and "
                              f"[stages.<name>] option tables")
        stage = _stage_or_error(get_stage, name, source)
        if stage.options is None:
            raise RecipeError(f"{source}: [stages.{name}]: stage {name!r} takes no options; remove the table")
        opts[name] = build_options(stage.options, sub, f"{source} [stages.{name}]")
    return tuple(dict.fromkeys(enable)), opts


def _stage_or_error(get_stage, name: str, source: str):
    try:
        return get_stage(name)
    except RecipeError:
        raise
    except Exception as exc:  # EdgemmError from the registry: unknown stage (with its hint) or a broken plugin
        raise RecipeError(f"{source}: [stages]: {exc}") from exc


def _recipe_spec(raw: dict, path: Path, src: str) -> IOSpec:
    """The recipe's IOSpec: its [[inputs]] / [[outputs]] tables; with ``[model] path`` naming an ONNX or OpenVINO IR
    file, the graph's spec with what the tables add (modality, pre-processing, labels: edgemm.modelfile)."""
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    inputs, outputs = raw.get("inputs", []), raw.get("outputs", [])
    for key, tables in (("inputs", inputs), ("outputs", outputs)):
        if not isinstance(tables, list):
            raise RecipeError(f"{src}: {key} must be an array of tables ([[{key}]] entries), not {type(tables).__name__}")
    file = model.get("path")
    if isinstance(file, str):
        from .modelfile import graph_spec, is_model_file_path

        if is_model_file_path(file):
            p = Path(file).expanduser()
            try:
                return graph_spec(p if p.is_absolute() else path.parent / p, inputs, outputs, raw.get("axes", {}), where=src)[1]
            except SpecError as exc:
                raise RecipeError(str(exc)) from exc
    if "inputs" not in raw:
        raise RecipeError(f"{src}: missing [[inputs]] (the model's named inputs)")
    for i, t in enumerate(inputs):
        if isinstance(t, dict) and "shape" not in t:
            name = t.get("name", f"#{i + 1}")
            raise RecipeError(f"{src}: [[inputs]] {name!r} has no shape; add one, e.g. shape = [\"batch\", 3, 64, 64] "
                              "(ints for fixed sizes, a name for each dynamic axis)")
    try:
        return IOSpec.from_manifest({"inputs": inputs, "outputs": outputs, "axes": raw.get("axes", {})})
    except SpecError as exc:
        raise RecipeError(f"{src}: {exc}") from exc


SECTIONS = ("model", "inputs", "outputs", "axes", "graphs", "data", "export", "verify", "quantize", "precision", "prune", "qat",
            "compile", "stages",
            # read by the tool that measures it, not by the export (edgemm.zoo.seeds.dual_bundle: zero-shot top-1)
            "zero_shot")
GRAPH_KEYS = ("factory", "checkpoint", "inputs", "outputs")


def _graphs(raw: dict, path: Path, src: str) -> dict[str, GraphRecipe]:
    """``[graphs.<name>]`` tables (factory, optional checkpoint, ``[[graphs.<name>.inputs]]`` / ``outputs``)."""
    from .layout import check_graph_name

    table = _table(raw, "graphs", src)
    if not table:
        raise RecipeError(f"{src}: [graphs] is empty; give one [graphs.<name>] table per graph (factory, inputs, outputs)")
    for key in ("inputs", "outputs"):
        if key in raw:
            raise RecipeError(f"{src}: [[{key}]] and [graphs.<name>] together; move the tables under each graph "
                              f"([[graphs.<name>.{key}]])")
    if isinstance(raw.get("model"), dict) and (raw["model"].get("factory") or raw["model"].get("path")):
        raise RecipeError(f"{src}: [model] names a factory/path and [graphs.<name>] tables too; give each graph its factory")
    out = {}
    for name, t in table.items():
        where = f"{src} [graphs.{name}]"
        if not isinstance(t, dict):
            raise RecipeError(f"{src}: [graphs] holds [graphs.<name>] tables, not {name} = {t!r}")
        try:
            check_graph_name(name)
        except EdgemmError as exc:  # a name a bundle folder cannot have
            raise RecipeError(f"{where}: {exc}") from exc
        unknown = [k for k in t if k not in GRAPH_KEYS]
        if unknown:
            raise RecipeError(f"{where}: unknown key {unknown[0]!r}{close_match_hint(unknown[0], GRAPH_KEYS)}; keys: "
                              f"{', '.join(GRAPH_KEYS)}")
        factory = t.get("factory")
        if not isinstance(factory, str) or not factory:
            raise RecipeError(f"{where}: missing factory = \"package.module:callable\" (returns the graph's nn.Module)")
        checkpoint = t.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise RecipeError(f"{where}: checkpoint must be a path string, not {checkpoint!r}")
        spec = _recipe_spec({"inputs": t["inputs"], "outputs": t.get("outputs", []), "axes": raw.get("axes", {})}
                            if "inputs" in t else {}, path, where)
        out[name] = GraphRecipe(name, factory, spec, checkpoint)
    return out


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} not found; see export/avnet.toml for an example")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path} is not valid TOML: {exc}") from exc
    src = str(path)
    for key in raw:
        if key not in SECTIONS:
            raise RecipeError(f"{src}: unknown section [{key}]{close_match_hint(key, SECTIONS)}; sections: {', '.join(SECTIONS)}")
    if "model" not in raw:
        raise RecipeError(f"{src}: missing [model] section (name + factory/checkpoint or path)")
    graphs = _graphs(raw, path, src) if "graphs" in raw else {}
    spec = next(iter(graphs.values())).spec if graphs else _recipe_spec(raw, path, src)
    prune = _prune(raw, src)
    if prune is not None and isinstance(prune.ratio, dict):  # branch names checked against the model's inputs now
        known = [*spec.input_names, FUSION]
        for key in prune.ratio:
            if key != ALL and key not in known:
                raise ConfigError(f"{src} [prune] ratio names {key!r}, not a branch of the model{close_match_hint(key, known)}; "
                                  f"its branches: {', '.join(known)}")
    stages, stage_options = _stages(raw, src)
    return Recipe(
        model=_typed(ModelConfig, raw, "model", src),
        spec=spec,
        data=_typed(DataConfig, raw, "data", src),
        export=_typed(ExportOptions, raw, "export", src),
        verify=_typed(VerifyOptions, raw, "verify", src),
        quantize=_typed(QuantizeOptions, raw, "quantize", src),
        precision=parse_precision(raw.get("precision", {}), src),
        prune=prune,
        qat=_typed(QATOptions, raw, "qat", src),
        compile=_compile(raw, src),
        stages=stages,
        stage_options=stage_options,
        base_dir=path.parent.resolve(),
        source=src,
        graphs=graphs,
    )
