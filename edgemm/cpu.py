"""What this CPU can do with int8, and which quantization options are safe on it.

ONNX Runtime's x86 int8 kernels multiply uint8 activations by int8 weights (U8S8). Without VNNI
(AVX2, AVX-512 without VNNI) they use ``vpmaddubsw``, whose 16-bit intermediate sums saturate
when two neighbouring products are both large; ONNX Runtime's quantization docs recommend
``reduce_range`` (7-bit weights) there. Measured on an AVX2-only EPYC: a Linear layer lost 5.5
points top-1 with 8-bit weights in the fused int8 kernels (the same Q/DQ model computed with
the int8 kernels disabled lost none); with 7-bit weights it lost none. VNNI (``vpdpbusd``)
accumulates in 32 bits and does not saturate. ARM's dot-product instructions do not either.

The same holds beyond ONNX Runtime's uint8 scheme (benchmarks/bench_int8_saturation.py, AVX2 EPYC): the symmetric
int8 scheme (``trt``, the openvino target's default) lost 4.5 points on that layer with 8-bit weights (0.5 emulated),
and OpenVINO's CPU plugin running either Q/DQ file lost exactly what ONNX Runtime's fused kernels lost; 7-bit weights
fix all of them, so every Q/DQ scheme for a CPU target uses them here. NNCF's IR (the ``nncf`` quantizer) lost 15
points with its default ``overflow_fix`` (first layer only) and 7.5 with ``OverflowFix.ENABLE``.
"""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from functools import lru_cache


@dataclass(frozen=True)
class CpuInt8:
    arch: str  # x86_64 | aarch64 | ...
    isa: str  # the best int8 dot-product path: avx512_vnni | avx_vnni | avx512 | avx2 | arm_dotprod | generic
    vnni: bool

    @property
    def u8s8_saturates(self) -> bool:
        """x86 without VNNI: 8-bit weights can overflow the 16-bit intermediate sums of ``vpmaddubsw``."""
        return self.isa in ("avx512", "avx2")

    def to_dict(self) -> dict:
        return {**asdict(self), "u8s8_saturates": self.u8s8_saturates}


def _flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@lru_cache(maxsize=1)
def cpu_int8() -> CpuInt8:
    arch = platform.machine().lower()
    flags = _flags()
    if arch in ("x86_64", "amd64", "i686", "x86"):
        for isa in ("avx512_vnni", "avx_vnni"):
            if isa in flags:
                return CpuInt8(arch, isa, True)
        if "avx512bw" in flags:
            return CpuInt8(arch, "avx512", False)
        if "avx2" in flags:
            return CpuInt8(arch, "avx2", False)
        return CpuInt8(arch, "generic", False)
    if arch in ("aarch64", "arm64"):
        return CpuInt8(arch, "arm_dotprod" if "asimddp" in flags else "generic", False)
    return CpuInt8(arch, "generic", False)


def saturation_warning(built_reduce_range: bool | None, here: CpuInt8 | None = None) -> str | None:
    """A warning when a U8S8 ONNX Runtime artifact built with 8-bit weights runs where they can saturate."""
    here = here or cpu_int8()
    if built_reduce_range is False and here.u8s8_saturates:
        return (f"this int8 artifact was quantized with 8-bit weights (for a CPU with VNNI, or a GPU); this CPU ({here.isa}, no VNNI) can "
                "saturate its int8 sums and lose accuracy: re-export with --int8 on this machine (edgemm then uses 7-bit "
                "weights) or run the fp32 artifact")
    if built_reduce_range is True and not here.u8s8_saturates and here.arch.startswith(("x86", "amd", "i686")):
        return (f"this int8 artifact was quantized with 7-bit weights for a CPU without VNNI; this CPU ({here.isa}) does not "
                "need them: re-export with --int8 here for full 8-bit weight precision (it runs correctly as it is)")
    return None
