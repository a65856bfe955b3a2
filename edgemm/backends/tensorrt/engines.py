"""Engines in a bundle: the side file that records how each was built, the timing caches beside them, and what
loading does when an engine does not match the device (use a sibling built here, rebuild from the source ONNX into
the user's cache, or refuse in one line).

A bundle is data: the side file's ``source`` is a path inside the bundle root, checked like every manifest path.
A load never writes into the bundle (its files are hashed); a rebuilt engine goes to
``$XDG_CACHE_HOME/edgemm/tensorrt/`` (default ``~/.cache``), keyed by the source's sha256 and the engine key.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

from ...errors import BundleError
from ...files import sha256_file
from ...log import logger
from .portability import DeviceInfo, EngineKey, mismatches, rebuild_decision, reusable_timing_caches
from .profiles import profiles_for_spec

MANIFEST = "manifest.json"


def sidecar_path(plan: Path) -> Path:
    return plan.with_suffix(".json")


def bundle_root_of(path: Path, depth: int = 6) -> Path | None:
    """The nearest folder above ``path`` holding a manifest (a graph's files sit at most a few levels down)."""
    for parent in list(path.resolve().parents)[:depth]:
        if (parent / MANIFEST).is_file():
            return parent
    return None


def source_label(source: Path, out_dir: Path) -> str:
    """Where the engine's source ONNX is, relative to the bundle root (found from the source), or, while an export
    is still writing its bundle, to the folder that holds the engine's folder."""
    root = bundle_root_of(source) or out_dir.resolve().parent
    try:
        return source.resolve().relative_to(root).as_posix()
    except ValueError:
        return source.name


def inside(root: Path, rel: str) -> Path:
    p = (root / rel).resolve()
    if not p.is_relative_to(root.resolve()):
        raise BundleError(f"the engine's source path {rel!r} leaves the bundle; re-compile the engine")
    return p


def read_sidecar(plan: Path) -> dict | None:
    side = sidecar_path(plan)
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{side.name} is unreadable ({exc}); re-compile the engine with `edgemm compile --target tensorrt`") from exc
    record = data.get("tensorrt") if isinstance(data, dict) else None
    if not isinstance(record, dict):
        raise BundleError(f"{side.name} holds no 'tensorrt' record; re-compile the engine with `edgemm compile --target tensorrt`")
    return record


def matching_engine(records: Mapping[str, Mapping], device: DeviceInfo, precision: str, source: str) -> str | None:
    """Among ``{plan file: record}``, one built from the same source and precision that runs on ``device``."""
    for name in sorted(records):
        rec = records[name]
        if rec.get("precision") == precision and rec.get("source") == source and not mismatches(rec, device):
            return name
    return None


def rebuild_options(options: Mapping | None, device: DeviceInfo) -> dict:
    """The recorded build options, adjusted to ``device``: a DLA core it does not have becomes a GPU build."""
    out = dict(options or {})
    core = out.get("dla_core")
    if core is not None and int(core) >= device.dla_cores:
        out["dla_core"] = None
    return out


def timing_caches_near(source: Path, out_dir: Path, device: DeviceInfo) -> list[bytes]:
    """Timing caches of this GPU architecture and TensorRT version saved in the bundle (any graph) or in ``out_dir``."""
    folders = [out_dir]
    root = bundle_root_of(source)
    if root is not None:
        folders += [root / "tensorrt", *sorted((root / "graphs").glob("*/tensorrt"))]
    blobs, seen = [], set()
    for folder in folders:
        if not folder.is_dir():
            continue
        for name in reusable_timing_caches([p.name for p in folder.iterdir()], device.compute_capability, device.trt_version):
            path = (folder / name).resolve()
            if path not in seen:
                seen.add(path)
                blobs.append(path.read_bytes())
    return blobs


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgemm" / "tensorrt"


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def engine_for_device(plan: Path, spec, device: DeviceInfo, *, allow_rebuild: bool | None, build_fn) -> tuple[bytes, dict]:
    """The engine bytes to run ``plan`` here, and its record: the plan itself when it matches ``device``; else a
    sibling plan built here from the same source; else a rebuild (cached) through ``build_fn(source, precision,
    source_precision, options) -> Built``; else (rebuilding off) a one-line refusal."""
    record = read_sidecar(plan)
    if allow_rebuild is None:
        allow_rebuild = bool(((record or {}).get("options") or {}).get("rebuild", True))
    decision = rebuild_decision(record, device, allow_rebuild=allow_rebuild)
    if decision.action == "use":
        return plan.read_bytes(), record
    if decision.action == "refuse":
        raise BundleError(decision.line(plan.name))
    if not record or not record.get("source"):
        raise BundleError(f"TensorRT engine {plan.name} has no build record naming its source ONNX, so it cannot be rebuilt "
                          "for this device; re-compile it here with `edgemm compile BUNDLE --target tensorrt`")
    siblings = {}
    for p in plan.parent.glob("*.plan"):
        if p != plan:
            rec = read_sidecar(p)
            if rec is not None:
                siblings[p.name] = rec
    found = matching_engine(siblings, device, record["precision"], record["source"])
    if found is not None:
        logger.info("TensorRT engine %s does not match this device; using %s, built here from the same source", plan.name, found)
        return (plan.parent / found).read_bytes(), siblings[found]
    root = bundle_root_of(plan)
    if root is None:
        raise BundleError(f"TensorRT engine {plan.name} is not inside a bundle, so its source ONNX cannot be found for a rebuild")
    source = inside(root, record["source"])
    if not source.is_file():
        raise BundleError(f"the source ONNX {record['source']} of {plan.name} is missing from the bundle; re-export it")
    options = rebuild_options(record.get("options"), device)
    precision = record["precision"]
    profiles = profiles_for_spec(spec, int(options.get("profiles", 1)), options.get("undeclared_axis_max"))
    key = EngineKey(device.compute_capability, device.trt_version, precision, tuple(profiles))
    opts_digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=list).encode()).hexdigest()[:8]
    cached = cache_dir() / f"{sha256_file(source)[:16]}-{key.tag}-{opts_digest}.plan"
    if cached.is_file():
        logger.info("TensorRT engine %s: using the engine rebuilt earlier for this device (%s)", plan.name, cached)
        return cached.read_bytes(), {**record, "rebuilt": str(cached)}
    logger.info("rebuilding TensorRT engine %s from %s for this device (%s)", plan.name, record["source"], "; ".join(decision.reasons))
    built = build_fn(source, precision, "int8" if precision == "int8" else "fp32", options)
    write_atomic(cached, built.engine)
    return built.engine, {**built.record, "rebuilt": str(cached)}
