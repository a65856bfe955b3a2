"""Engines are tied to the GPU and the TensorRT that built them: what an engine records, and whether this device
can run it, needs a rebuild from its ONNX, or (with rebuilding turned off) is refused.

TensorRT developer guide, "Version Compatibility" and "Hardware Compatibility": by default a serialized engine runs
only with the TensorRT version that built it, and only on GPUs of the compute capability it was built for; the
timing cache is equally specific to the device and the TensorRT version ("Timing Cache"). edgemm builds neither
version- nor hardware-compatible engines (both cost speed), so the record holds the exact version and compute
capability, and a mismatch is a rebuild.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from ...errors import BundleError
from .plan import TrtVersion
from .profiles import Profile

RECORD_KEYS = ("version", "compute_capability", "precision", "profiles")


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU and TensorRT an engine runs on here."""

    name: str
    compute_capability: tuple[int, int]
    trt_version: str
    dla_cores: int = 0

    @property
    def cc(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def parse_cc(text: object) -> tuple[int, int]:
    m = re.match(r"^\s*(?:sm_?)?(\d+)\.(\d+)\s*$", str(text)) or re.match(r"^\s*sm_?(\d)(\d)\s*$", str(text))
    if not m:
        raise BundleError(f"compute capability {text!r} is not of the form 8.6; re-compile the engine")
    return int(m.group(1)), int(m.group(2))


def profiles_digest(profiles: Sequence[Profile]) -> str:
    blob = json.dumps([p.to_dict() for p in profiles], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class EngineKey:
    compute_capability: tuple[int, int]
    trt_version: str
    precision: str
    profiles: tuple[Profile, ...]

    @property
    def tag(self) -> str:
        """A file-name-safe key: ``sm86-trt10.3.0-fp16-<profiles digest>``."""
        cc = self.compute_capability
        return f"sm{cc[0]}{cc[1]}-trt{TrtVersion.parse(self.trt_version)}-{self.precision}-{profiles_digest(self.profiles)}"


def engine_stem(precision: str, compute_capability: tuple[int, int], trt_version: str) -> str:
    """``model.fp16.sm86-trt10.3.0``: one engine per precision, GPU architecture and TensorRT version in a folder."""
    return f"model.{precision}.sm{compute_capability[0]}{compute_capability[1]}-trt{TrtVersion.parse(trt_version)}"


def timing_cache_name(compute_capability: tuple[int, int], trt_version: str, precision: str) -> str:
    return f"timing.{precision}.sm{compute_capability[0]}{compute_capability[1]}-trt{TrtVersion.parse(trt_version)}.cache"


_TIMING = re.compile(r"^timing\.(?P<precision>\w+)\.sm(?P<cc>\d+)-trt(?P<version>\d+\.\d+\.\d+)\.cache$")


def reusable_timing_caches(file_names: Sequence[str], compute_capability: tuple[int, int], trt_version: str) -> list[str]:
    """The timing caches among ``file_names`` made on this GPU architecture and TensorRT version (any precision:
    TensorRT keys each entry by layer and tactic, so caches of other precisions add entries, never wrong ones)."""
    cc = f"{compute_capability[0]}{compute_capability[1]}"
    v = str(TrtVersion.parse(trt_version))
    out = []
    for name in sorted(file_names):
        m = _TIMING.match(name)
        if m and m.group("cc") == cc and m.group("version") == v:
            out.append(name)
    return out


def engine_record(key: EngineKey, *, source: str, plan: Mapping, timing_cache: str | None, dla_core: int | None,
                  fallback_layers: Sequence[str], sparse_weights: Mapping, fp16: Mapping | None = None) -> dict:
    """What ``Compiled.extra["tensorrt"]`` (and the engine's side file) records about one engine."""
    return {"version": str(TrtVersion.parse(key.trt_version)), "compute_capability": f"{key.compute_capability[0]}.{key.compute_capability[1]}",
            "precision": key.precision, "profiles": [p.to_dict() for p in key.profiles], "key": key.tag, "source": source,
            "build": dict(plan), "timing_cache": timing_cache, "dla_core": dla_core, "fallback_layers": list(fallback_layers),
            "sparse_weights": dict(sparse_weights), **({"fp16": dict(fp16)} if fp16 else {})}


@dataclass(frozen=True)
class Decision:
    action: str  # "use" | "rebuild" | "refuse"
    reasons: tuple[str, ...] = ()

    def line(self, engine: str) -> str:
        why = "; ".join(self.reasons)
        if self.action == "refuse":
            return (f"TensorRT engine {engine} does not match this device ({why}) and rebuilding is turned off; rebuild it "
                    f"here with `edgemm compile BUNDLE --target tensorrt`, or allow the rebuild")
        return f"TensorRT engine {engine}: {why}" if why else f"TensorRT engine {engine} matches this device"


def mismatches(record: Mapping | None, device: DeviceInfo) -> list[str]:
    """Why an engine with ``record`` cannot run on ``device`` (empty: it can)."""
    if not record or any(k not in record for k in RECORD_KEYS):
        return ["the engine carries no build record (compute capability, TensorRT version)"]
    out = []
    built_cc = parse_cc(record["compute_capability"])
    if built_cc != tuple(device.compute_capability):
        out.append(f"built for compute capability {built_cc[0]}.{built_cc[1]}, this GPU ({device.name}) is {device.cc}")
    built_v, here_v = TrtVersion.parse(record["version"]), TrtVersion.parse(device.trt_version)
    if built_v != here_v:
        out.append(f"built with TensorRT {built_v}, this machine has {here_v}")
    dla = record.get("dla_core")
    if dla is not None and int(dla) >= device.dla_cores:
        out.append(f"built for DLA core {dla}, this device has {device.dla_cores} DLA core(s)")
    return out


def rebuild_decision(record: Mapping | None, device: DeviceInfo, *, allow_rebuild: bool = True) -> Decision:
    """Use the engine, rebuild it from its source ONNX, or refuse (``allow_rebuild`` False, e.g. ``--no-rebuild``)."""
    why = mismatches(record, device)
    if not why:
        return Decision("use")
    return Decision("rebuild" if allow_rebuild else "refuse", tuple(why))
