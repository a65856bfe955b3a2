"""``[compile.litert]``: how ``edgemm export --target litert`` converts the torch model with litert-torch."""
from __future__ import annotations

from ...options import Options, option, options


@options("compile.litert")
class LiteRtOptions(Options):
    per_channel: bool = option(
        True, help="int8 weights with one scale per output channel (false: one per tensor); activations are always "
                   "static per-tensor int8 (litert-torch's PT2E symmetric config)")
