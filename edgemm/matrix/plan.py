"""A matrix plan: models (recipes, .pt2 programs or model folders) x targets x precisions x device kinds.

```toml
[matrix]
output = "../build/matrix"              # bundles, the report and the state file (relative to the plan)
targets = ["onnxruntime", "openvino"]
precisions = ["fp32", "int8"]
device_kinds = ["any"]                  # a Ray custom resource per kind; "any": whichever node is free

[bench]                                 # edgemm.benchmark settings of every cell
batch = 1
rounds = 2
seconds = 1.0

[[models]]
name = "avnet"                          # default: the file's stem
model = "avnet.toml"                    # a recipe, a .pt2 program or a model folder (relative to the plan)
# prune = 0.5 / options = {export = {exporter = "legacy"}} / calibration / evaluation; targets, precisions and
# device_kinds override [matrix]'s for this model
```

Every table goes through the options seam (``edgemm.options``): a bad key or value is one
``ConfigError`` line naming the plan, the table and what is allowed, with a close-match hint.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Union

from ..errors import ConfigError, close_match_hint
from ..options import Options, build_options, option, options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ANY = "any"  # the device kind of cells that may run on any node
PRECISIONS = ("fp32", "fp16", "int8")
TABLES = ("matrix", "bench", "models")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # model names and device kinds: folder names and Ray resource names

Precision = Literal["fp32", "fp16", "int8"]


@options("matrix")
class MatrixOptions(Options):
    """The ``[matrix]`` table: what every model is built for and where the results go."""

    output: str | None = option(None, help="folder of the bundles, the report and the state file, relative to the plan "
                                          "(default: build/matrix-<plan name> in the current folder; -o overrides)")
    targets: tuple[str, ...] = option(("onnxruntime",), help="backends every model is exported for (one bundle per cell)")
    precisions: tuple[Precision, ...] = option(("fp32",), help="precisions measured per target: fp32, fp16, int8")
    device_kinds: tuple[str, ...] = option((ANY,), help="where cells run: a Ray custom resource name per kind (a node "
                                                        "started with --resources '{\"jetson-orin\": 1}' runs the jetson-orin "
                                                        "cells); 'any': whichever node is free")
    wait_node_s: float = option(60.0, gt=0, help="with --ray: how long a cell waits for a live node of its device kind "
                                                "before it counts as lost (rerun to finish it)")


@options("bench")
class MatrixBenchOptions(Options):
    """The ``[bench]`` table: how each cell is timed (edgemm.benchmark, model mode)."""

    batch: int = option(1, ge=1, help="batch size timed (default 1)")
    rounds: int = option(2, ge=1, help="timed rounds per cell (default 2)")
    seconds: float = option(1.0, gt=0, help="timed seconds per round (default 1)")
    warmup: int = option(10, ge=0, help="untimed calls first (default 10)")
    threads: int | None = option(None, ge=1, help="threads of the runtime (default min(4, cores) of the node)")


@options("models")
class ModelEntry(Options):
    """One ``[[models]]`` entry."""

    model: str | None = option(None, help="a recipe (.toml), a torch.export program (.pt2) or a model folder, "
                                          "relative to the plan (required)")
    name: str | None = option(None, help="the row's model name (default: the file's stem)")
    prune: Union[float, str, None] = option(None, help="a pruning ratio for this model's exports (0.5, "
                                                       "'image=0.5,audio=0.3' or '2:4')")
    options: dict[str, dict[str, Any]] = option({}, help="edgemm.export(options=...): recipe sections, e.g. "
                                                         "{export = {exporter = \"legacy\"}, quantize = {max_drop = 0.02}}")
    calibration: str | None = option(None, help="calibration data for int8 (default: the recipe's)")
    evaluation: str | None = option(None, help="labelled evaluation data (default: the recipe's)")
    targets: tuple[str, ...] | None = option(None, help="this model's targets (default: [matrix] targets)")
    precisions: tuple[Precision, ...] | None = option(None, help="this model's precisions (default: [matrix] precisions)")
    device_kinds: tuple[str, ...] | None = option(None, help="this model's device kinds (default: [matrix] device_kinds)")


@dataclass(frozen=True)
class Cell:
    """One export + verify + bench of the matrix."""

    model: str  # the entry's name
    path: str  # what edgemm.export takes (absolute)
    target: str
    precision: str
    device_kind: str
    prune: Any
    options: Mapping[str, Any]
    calibration: str | None
    evaluation: str | None
    build_key: str  # changes when anything the bundle depends on changes (the bundle is rebuilt)
    measure_key: str  # ... or the measurement (the cell is measured again)

    @property
    def id(self) -> str:
        return f"{self.model}/{self.target}/{self.precision}/{self.device_kind}"

    @property
    def folder(self) -> str:
        """The cell's bundle folder inside the output folder."""
        return f"bundles/{self.model}/{self.target}-{self.precision}-{self.device_kind}"

    def payload(self) -> dict:
        """What a task gets (plain data: it travels to Ray workers)."""
        return {"id": self.id, "model": self.model, "path": self.path, "target": self.target, "precision": self.precision,
                "device_kind": self.device_kind, "prune": self.prune, "options": json.loads(json.dumps(self.options)),
                "calibration": self.calibration, "evaluation": self.evaluation}


@dataclass(frozen=True)
class Plan:
    path: Path
    matrix: MatrixOptions
    bench: MatrixBenchOptions
    models: tuple[ModelEntry, ...]
    cells: tuple[Cell, ...]

    def output(self, override: str | None = None) -> Path:
        if override:
            return Path(override).absolute()
        if self.matrix.output:
            return (self.path.parent / self.matrix.output).resolve()
        return Path("build", f"matrix-{self.path.stem}").absolute()


def load_plan(path: str | Path) -> Plan:
    """Read and check a plan file; one ConfigError line per problem, naming the key and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"matrix plan {path} not found; give a plan .toml (see export/matrix.toml)")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML plan: {exc}") from None
    for key in data:
        if key not in TABLES:
            raise ConfigError(f"{path}: unknown table [{key}]{close_match_hint(key, TABLES)}; a plan has [matrix], [bench] "
                              "and [[models]]")
    matrix = build_options(MatrixOptions, _table(data, "matrix", path), f"{path} [matrix]")
    bench = build_options(MatrixBenchOptions, _table(data, "bench", path), f"{path} [bench]")
    raw_models = data.get("models")
    if not isinstance(raw_models, list) or not raw_models or not all(isinstance(m, dict) for m in raw_models):
        raise ConfigError(f"{path}: the plan needs at least one [[models]] table with model = \"recipe.toml\"")
    _check_kinds(matrix.device_kinds, f"{path} [matrix]")
    _check_targets(matrix.targets, f"{path} [matrix]")
    models, names = [], set()
    for i, raw in enumerate(raw_models, 1):
        where = f"{path} [[models]] #{i}"
        entry = build_options(ModelEntry, raw, where)
        if not entry.model:
            raise ConfigError(f"{where}: model is missing; give model = \"recipe.toml\" (a recipe, .pt2 or model folder, "
                              "relative to the plan)")
        target = (path.parent / entry.model).resolve()
        if not target.exists():
            raise ConfigError(f"{where} model = {entry.model!r}: {target} not found; paths are relative to the plan")
        name = entry.name or target.stem
        if not _NAME.match(name):
            raise ConfigError(f"{where} name = {name!r} is not allowed: use letters, digits, '_', '.' and '-' (it names a folder)")
        if name in names:
            raise ConfigError(f"{where} name = {name!r} is given twice; give each model its own name")
        names.add(name)
        if entry.targets is not None:
            _check_targets(entry.targets, where)
        if entry.device_kinds is not None:
            _check_kinds(entry.device_kinds, where)
        _check_sections(entry.options, where)
        for key in ("calibration", "evaluation"):
            value = getattr(entry, key)
            if value is not None and value != "synthetic" and not (path.parent / value).exists():
                raise ConfigError(f"{where} {key} = {value!r}: {(path.parent / value).resolve()} not found; paths are relative to the plan")
        models.append(entry)
    cells = tuple(c for entry in models for c in _cells(path, matrix, bench, entry))
    return Plan(path.absolute(), matrix, bench, tuple(models), cells)


def _table(data: Mapping, key: str, path: Path) -> Mapping:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: {key} must be a table ([{key}]), not {type(value).__name__}")
    return value


def _check_kinds(kinds, where: str) -> None:
    if not kinds:
        raise ConfigError(f"{where} device_kinds = [] is not allowed: give at least one kind (\"any\": any node)")
    for k in kinds:
        if not _NAME.match(k):
            raise ConfigError(f"{where} device_kinds: {k!r} is not allowed: a kind is a Ray resource name (letters, digits, "
                              "'_', '.', '-'), e.g. \"jetson-orin\", or \"any\"")
        if k in ("CPU", "GPU", "memory", "object_store_memory"):
            raise ConfigError(f"{where} device_kinds: {k!r} is one of Ray's own resources; name the kind of device "
                              "(e.g. \"edge-x86\") and start its nodes with --resources '{\"edge-x86\": 1}'")


def _check_targets(targets, where: str) -> None:
    from ..backends.registry import target_names

    if not targets:
        raise ConfigError(f"{where} targets = [] is not allowed: give at least one backend, e.g. [\"onnxruntime\"]")
    known = list(target_names())
    for t in targets:
        if t not in known:
            raise ConfigError(f"{where} targets: {t!r} is not a target{close_match_hint(t, known)}; known: {', '.join(known)}")


def _check_sections(sections: Mapping, where: str) -> None:
    """Each ``options`` section is checked by its options class now, not minutes later inside a task."""
    from ..configure import options_class

    for section, table in sections.items():
        cls = options_class(section, f"{where} options")
        build_options(cls, table, f"{where} options.{section}")


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _fingerprint(target: Path) -> str:
    """What a rebuild depends on in the model's own files: a file's bytes (a recipe also its data files stay the
    recipe's business), a folder's file names, sizes and times."""
    if target.is_file():
        return hashlib.sha256(target.read_bytes()).hexdigest()
    return _key(sorted((str(p.relative_to(target)), p.stat().st_size, int(p.stat().st_mtime))
                       for p in target.rglob("*") if p.is_file()))


def _cells(path: Path, matrix: MatrixOptions, bench: MatrixBenchOptions, entry: ModelEntry):
    target_path = (path.parent / entry.model).resolve()
    name = entry.name or target_path.stem
    fingerprint = _fingerprint(target_path)
    calib = str((path.parent / entry.calibration).resolve()) if entry.calibration and entry.calibration != "synthetic" else entry.calibration
    evaluation = str((path.parent / entry.evaluation).resolve()) if entry.evaluation else None
    for kind in entry.device_kinds or matrix.device_kinds:
        for target in entry.targets or matrix.targets:
            for precision in entry.precisions or matrix.precisions:
                build = _key(fingerprint, str(target_path), target, precision, kind, entry.prune, entry.options, calib, evaluation)
                measure = _key(build, {f: getattr(bench, f) for f in ("batch", "rounds", "seconds", "warmup", "threads")})
                yield Cell(name, str(target_path), target, precision, kind, entry.prune, dict(entry.options), calib,
                           evaluation, build, measure)
