"""CPU int8 capability detection and the quantization options chosen from it."""
from __future__ import annotations

from edgemm.cpu import CpuInt8, cpu_int8, saturation_warning


def test_this_cpu_is_classified_from_its_flags():
    flags = open("/proc/cpuinfo").read()
    caps = cpu_int8()
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        assert caps.vnni and not caps.u8s8_saturates
    elif " avx2" in flags:
        assert caps.isa in ("avx2", "avx512") and caps.u8s8_saturates


def test_saturation_warnings_name_the_fix():
    vnni, avx2 = CpuInt8("x86_64", "avx512_vnni", True), CpuInt8("x86_64", "avx2", False)
    assert "re-export with --int8 on this machine" in saturation_warning(False, avx2)
    assert saturation_warning(True, avx2) is None and saturation_warning(False, vnni) is None
    assert "7-bit" in saturation_warning(True, vnni)
    assert saturation_warning(None, avx2) is None
