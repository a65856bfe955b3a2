"""``[export]``: how the model becomes its fp32 ONNX and which targets the bundle is for."""
from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from ...errors import close_match_hint
from ...options import Options, option, options


@options("export")
class ExportOptions(Options):
    targets: tuple[str, ...] = option(("onnxruntime", "openvino"), flag="--target", metavar="T1,T2",
                                      help="comma-separated targets from `edgemm backends` (default: the recipe's, else "
                                           "onnxruntime,openvino)")
    opset: int = option(18, ge=18, help="ONNX opset (default 18; the dynamo exporter needs >= 18)", flag="--opset")
    exporter: Literal["dynamo", "legacy"] = option("dynamo", flag="--exporter",
                                                   help="ONNX exporter (default dynamo, legacy on failure)")
    slim: bool = option(True, help="simplify the exported ONNX graph with onnxslim (default on)")
    rewrite_attention: bool = option(True, help="export nn.MultiheadAttention batch-first with split heads: fewer layout ops, "
                                                "same numbers (default on)")
    fp16: bool = option(True, help="also write fp16-compressed artifacts where the target has them (default on)")
    tune_threads: bool = option(False, help="time each CPU artifact at 1 thread against --threads at batch 1 (paired rounds, "
                                            "about 2 s an artifact) and record the faster count, which edgemm.load uses "
                                            "unless given threads (default off; on in the shipped recipes)")

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from ...backends.registry import target_names

        known = target_names()
        for t in value:
            if t not in known:
                raise ValueError(f"unknown target {t!r}{close_match_hint(t, known)}; use one of {', '.join(known)}")
        if not value:
            raise ValueError(f"name at least one target: {', '.join(known)}")
        return tuple(dict.fromkeys(value))


ExportConfig = ExportOptions  # the name recipes and stages used before the options seam
