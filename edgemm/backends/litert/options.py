"""``[compile.litert]``: how ``edgemm export --target litert`` converts the torch model with litert-torch."""
from __future__ import annotations

from ...options import Options, option, options


@options("compile.litert")
class LiteRtOptions(Options):
    per_channel: bool = option(
        True, help="int8 weights with one scale per output channel (false: one per tensor); activations are always "
                   "static per-tensor int8 (litert-torch's PT2E symmetric config)")
    calibration_batch: int = option(
        32, ge=2, le=4096, help="calibration samples per forward pass of the observed model (its observers cost about the "
                                "same per call at any batch: 256 single samples took 4 min on avnet, 8 calls of 32 about 30 s)")
