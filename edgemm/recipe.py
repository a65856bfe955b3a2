"""Deployment recipes (``export/*.toml``) -> typed configs.

```toml
[model]
name = "avnet"
factory = "edgemm.zoo.avnet:build"        # importable callable returning an nn.Module ...
checkpoint = "../edgemm/zoo/checkpoints/avnet.pt"  # ... called as factory(checkpoint=...)
# path = "model.pt2"                       # ... or a torch.export program instead of a factory

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

[data]
calibration = "../calibration_data/avmnist/calib.npz"
evaluation = "../calibration_data/avmnist/eval.npz"
training = "../calibration_data/avmnist/train.npz"   # fine-tuning (prune, QAT); or a [data.training] generator table

[export]
targets = ["onnxruntime", "openvino"]
opset = 18

[verify]
parity_samples = 32
```
Relative paths are relative to the recipe file. Unknown keys are errors with a close-match hint.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EdgemmError, RecipeError, close_match_hint
from .iospec import IOSpec
from .trust import import_callable  # noqa: F401  (the recipe's factory is the user's own code)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class ModelConfig:
    name: str = "model"
    factory: str | None = None  # "package.module:callable"
    checkpoint: str | None = None
    path: str | None = None  # a .pt2 torch.export program


@dataclass(frozen=True)
class DataConfig:
    calibration: str | None = None
    evaluation: str | None = None
    training: str | dict | None = None  # pruning / QAT fine-tuning data (default: the calibration data): a path or a
    # [data.training] table with generator = "module:callable" (edgemm.data.generated)

    def __post_init__(self):
        from .data.generated import check_training

        check_training(self.training)


@dataclass(frozen=True)
class ExportConfig:
    targets: tuple[str, ...] = ("onnxruntime", "openvino")
    opset: int = 18
    exporter: str = "dynamo"  # dynamo (falls back to legacy with a warning) | legacy
    slim: bool = True
    rewrite_attention: bool = True  # export nn.MultiheadAttention batch-first with fewer layout ops (edgemm/stages/rewrite.py)
    fp16: bool = True  # also write fp16-compressed artifacts where the target supports it

    def __post_init__(self):
        from .backends.registry import target_names

        targets = target_names()
        for t in self.targets:
            if t not in targets:
                raise RecipeError(f"unknown target {t!r}{close_match_hint(t, targets)}; use one of {', '.join(targets)}")
        if self.opset < 18:
            raise RecipeError(f"opset {self.opset} is too old: the dynamo exporter needs opset >= 18")
        if self.exporter not in ("dynamo", "legacy"):
            raise RecipeError(f"exporter must be 'dynamo' or 'legacy', not {self.exporter!r}")


@dataclass(frozen=True)
class VerifyConfig:
    parity_samples: int = 32  # held-out samples compared output by output
    batch: int = 16
    cosine_min: float = 0.9999  # fp32 artifacts
    cosine_min_fp16: float = 0.999
    cosine_min_int8: float = 0.95  # enforced only without labelled evaluation data (else the budget judges INT8)
    max_abs: float | None = None  # optional absolute bound for fp32 artifacts
    eval_limit: int | None = None  # evaluate accuracy on the first N samples only


@dataclass(frozen=True)
class QuantizeConfig:
    method: str = "minmax"  # calibration method: minmax | percentile | entropy
    max_drop: float | str | None = 0.01  # absolute top-1 drop (0.01 = 1 point) or "2%" relative
    quantizer: dict = field(default_factory=dict)  # target -> a quantizer name (edgemm.stages.quantize.registry)
    speed_guard: bool = True  # CPU targets: INT8 not slower than fp32 at batch 1 (5 %)
    calibration_limit: int | None = None  # use only the first N calibration samples

    def __post_init__(self):
        from .backends.registry import target_names
        from .stages.quantize.qdq import METHODS
        from .stages.quantize.registry import quantizer_names

        if self.method not in METHODS:
            raise RecipeError(f"unknown calibration method {self.method!r}{close_match_hint(self.method, METHODS)}; use one of {', '.join(METHODS)}")
        targets, names = target_names(), quantizer_names()
        for target, q in dict(self.quantizer).items():
            if target not in targets:
                raise RecipeError(f"[quantize] quantizer names unknown target {target!r}{close_match_hint(target, targets)}")
            if q not in names:
                raise RecipeError(f"unknown quantizer {q!r} for {target}{close_match_hint(q, names)}; use one of {', '.join(names)}")


def parse_max_drop(value) -> tuple[float | None, bool]:
    """``0.01`` -> (0.01, absolute); ``"2%"`` -> (0.02, relative); ``"none"`` -> (None, False)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "off")):
        return None, False
    text = str(value).strip()
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0, True
        v = float(text)
    except ValueError as exc:
        raise RecipeError(f"--max-drop {value!r} is not a number; write 0.01 (1 point absolute) or 2% (relative)") from exc
    if not 0 <= v <= 1:
        raise RecipeError(f"--max-drop {v} is outside [0, 1]; top-1 drops are fractions (0.01 = 1 point)")
    return v, False


def parse_precision(table: dict, source: str):
    """[precision] part = "fp32" | "int8", exclude_ops = [...], exclude_nodes = [...] -> PrecisionPolicy."""
    from .stages.quantize.ptq import PrecisionPolicy

    float_parts, ops, nodes = [], (), ()
    for key, value in table.items():
        if key == "exclude_ops":
            ops = tuple(value)
        elif key == "exclude_nodes":
            nodes = tuple(value)
        elif value in ("fp32", "fp16"):
            float_parts.append(key)
        elif value != "int8":
            raise RecipeError(f"{source}: [precision] {key} = {value!r}; use \"fp32\" (keep float) or \"int8\"")
    return PrecisionPolicy(tuple(float_parts), ops, nodes)


@dataclass(frozen=True)
class Recipe:
    model: ModelConfig
    spec: IOSpec
    data: DataConfig = field(default_factory=DataConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    precision: Any = None  # PrecisionPolicy
    prune: dict | None = None  # the [prune] table (checked by edgemm.stages.prune.parse_prune)
    base_dir: Path = Path(".")
    source: str = ""

    def resolve(self, rel: str | None) -> Path | None:
        if rel is None:
            return None
        p = Path(rel).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def build_model(self):
        """The user's nn.Module (factory + checkpoint) or the loaded .pt2 program's module."""
        if self.model.path:
            from .torchutil import load_pt2

            return load_pt2(self.resolve(self.model.path))
        if not self.model.factory:
            raise RecipeError(f"{self.source}: [model] needs 'factory' (\"module:callable\") or 'path' (a .pt2 file)")
        fn = import_callable(self.model.factory)
        kwargs = {}
        if self.model.checkpoint:
            ckpt = self.resolve(self.model.checkpoint)
            if not ckpt.is_file():
                raise RecipeError(f"checkpoint {ckpt} not found (recipe {self.source}); fix [model] checkpoint or train it first")
            kwargs["checkpoint"] = ckpt
        return fn(**kwargs)


def _typed(cls, table: Any, section: str, source: str):
    if not isinstance(table, dict):
        raise RecipeError(f"{source}: [{section}] must be a table")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in table:
        if key not in known:
            raise RecipeError(
                f"{source}: unknown key {key!r} in [{section}]{close_match_hint(key, known)}; known keys: {', '.join(sorted(known))}"
            )
    list_fields = {"targets"}
    for key in list_fields & set(table):
        if not isinstance(table[key], list):
            raise RecipeError(f"{source}: [{section}] {key} must be a list, e.g. {key} = [{table[key]!r}]".replace("'", '"'))
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    if cls.__name__ == "QuantizeConfig" and "max_drop" in kwargs:
        parse_max_drop(kwargs["max_drop"])  # validate early
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise RecipeError(f"{source}: bad [{section}] ({exc})") from exc


def _prune_table(table, spec: IOSpec, source: str) -> dict | None:
    """[prune] ratio = 0.5 | "image=0.5,audio=0.3" | "2:4", criterion, epochs, finetune_minutes, ... (checked now)."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise RecipeError(f"{source}: [prune] must be a table, e.g. [prune] ratio = 0.5")
    from .stages.prune.config import parse_prune

    try:
        parse_prune(table, spec.input_names)
    except EdgemmError as exc:
        raise RecipeError(f"{source}: {exc}") from exc
    return dict(table)


SECTIONS = ("model", "inputs", "outputs", "data", "export", "verify", "quantize", "precision", "prune")


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
    if "inputs" not in raw:
        raise RecipeError(f"{src}: missing [[inputs]] (the model's named inputs)")
    from .errors import SpecError

    try:
        spec = IOSpec.from_manifest({"inputs": raw["inputs"], "outputs": raw.get("outputs", [])})
    except SpecError as exc:
        raise RecipeError(f"{src}: {exc}") from exc
    return Recipe(
        model=_typed(ModelConfig, raw["model"], "model", src),
        spec=spec,
        data=_typed(DataConfig, raw.get("data", {}), "data", src),
        export=_typed(ExportConfig, raw.get("export", {}), "export", src),
        verify=_typed(VerifyConfig, raw.get("verify", {}), "verify", src),
        quantize=_typed(QuantizeConfig, raw.get("quantize", {}), "quantize", src),
        precision=parse_precision(raw.get("precision", {}), src),
        prune=_prune_table(raw.get("prune"), spec, src),
        base_dir=path.parent.resolve(),
        source=src,
    )
