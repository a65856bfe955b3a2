"""``[compile.openvino]``: how ``edgemm compile --target openvino`` (and export) writes the IR, and how it is run.

Run-time properties (``performance_hint``, ``num_streams``) travel inside the IR, in the model's
``rt_info["runtime_options"]`` (OpenVINO's own place for a model's compile-time properties): the
runner reads them back with :func:`runtime_options`, so a compiled artifact runs as it was compiled.
"""
from __future__ import annotations

from typing import Literal

from ...options import Options, option, options

RT_SECTION = "runtime_options"
SHAPES_SECTION = "edgemm_shapes"  # what edgemm's runner compiles beside the dynamic model (not an OpenVINO property)


@options("compile.openvino")
class OpenVinoOptions(Options):
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = option(
        "LATENCY", help="what the CPU plugin optimises the compiled IR for: LATENCY (one request at a time) or THROUGHPUT "
                        "(several parallel streams, for many threads or batched serving)")
    num_streams: int | None = option(None, ge=1, help="parallel inference streams (default: what the performance hint picks)")
    static_batch: int | None = option(
        1, ge=1, help="the batch the deployment feeds (default 1): the runner compiles a float IR with its batch axis fixed "
                      "to it when it loads (no shape inference or memory re-planning per call, and no compile on the first "
                      "call), beside the dynamic IR that serves other batches; none: fixed shapes only on first use")

    def runtime(self) -> dict[str, str]:
        """OpenVINO properties of the runner (``compile_model`` config) that these options set."""
        out = {"PERFORMANCE_HINT": self.performance_hint}
        if self.num_streams is not None:
            out["NUM_STREAMS"] = str(self.num_streams)
        return out


def store_runtime_options(model, opts: OpenVinoOptions) -> None:
    """Write ``opts.runtime()`` and the deployment batch into ``model``'s rt_info (saved with the IR)."""
    for key, value in opts.runtime().items():
        model.set_rt_info(value, [RT_SECTION, key])
    if opts.static_batch is not None:
        model.set_rt_info(str(opts.static_batch), [SHAPES_SECTION, "static_batch"])


def recorded_static_batch(model) -> int | None:
    """The deployment batch an IR was compiled for (None: none recorded, e.g. IRs compiled before, or ONNX files)."""
    if not model.has_rt_info([SHAPES_SECTION, "static_batch"]):
        return None
    value = model.get_rt_info([SHAPES_SECTION, "static_batch"])
    text = str(value.astype(str)) if hasattr(value, "astype") else str(value)
    return int(text) if text.isdigit() and int(text) > 0 else None


def runtime_options(model) -> dict[str, str]:
    """The run-time properties an IR was compiled with (empty for IRs without them: exported before, or ONNX files)."""
    if not model.has_rt_info(RT_SECTION):
        return {}
    known = ("PERFORMANCE_HINT", "NUM_STREAMS")
    section = model.get_rt_info()[RT_SECTION]
    return {k: str(section[k].astype(str)) if hasattr(section[k], "astype") else str(section[k]) for k in known if k in section}
