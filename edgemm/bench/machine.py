"""What machine a benchmark ran on (quoted with every number)."""
from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone


PACKAGES = ("edgemm", "numpy", "torch", "onnxruntime", "openvino", "nncf", "nvidia-modelopt", "opencv-python-headless")


def machine_info() -> dict:
    cpu, flags = platform.processor() or "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not cpu.strip(" x86_64"):
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    if cpu:
                        break
    except OSError:
        pass
    from ..backends.registry import all_backends

    versions = {}
    for name, b in all_backends().items():
        av = b.availability()
        versions[name] = av.version if av.available else None
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "cpu": cpu or platform.machine(),
        "cores": os.cpu_count(),
        "isa": sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "backends": versions,
        "packages": _packages(),
        "loadavg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _packages() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
