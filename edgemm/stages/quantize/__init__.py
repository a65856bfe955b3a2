"""INT8 quantization stage: calibration + per-target Q/DQ (or NNCF IR) with speed and accuracy guards."""
from __future__ import annotations

import tempfile
from pathlib import Path

from ...bundle import Artifact, BundleWriter
from ...backends.base import version_of
from ...cpu import cpu_int8
from ...data.calibration import CalibrationSource
from ...data.datasets import Samples
from ...iospec import IOSpec
from ...log import step
from .ptq import DEFAULT_QUANTIZER, BudgetNotMet, PrecisionPolicy, PTQConfig, TargetResult, install, quantize_target

__all__ = ["PTQConfig", "PrecisionPolicy", "BudgetNotMet", "add_int8_artifacts", "DEFAULT_QUANTIZER"]

DEST = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "tensorrt"}


def reference_metrics(fp32_onnx: Path, spec: IOSpec, samples: Samples | None, threads: int) -> dict[str, float] | None:
    """Top-1 of the fp32 model on the evaluation split (ORT fp32 == torch within 1e-6; see parity)."""
    if samples is None or not samples.labels:
        return None
    from ...backends.base import RunnerOptions
    from ...backends.registry import get_backend
    from ..verify import run_batched, top1

    r = get_backend("onnxruntime").create_runner(fp32_onnx, spec, RunnerOptions(threads=threads))
    out = top1(run_batched(r, samples.feeds, 32), samples.labels)
    r.close()
    return out


def add_int8_artifacts(w: BundleWriter, fp32: Path, spec: IOSpec, calib: CalibrationSource, samples: Samples | None,
                       targets, cfg: PTQConfig, method_name: str = "ptq", reference_onnx: Path | None = None,
                       extra_info: dict | None = None, stem: str = "model.int8", model=None) -> list[TargetResult]:
    """Quantize ``fp32`` (an ONNX file) for every target and add the INT8 artifacts to the bundle being written.

    ``model``: the torch model ``fp32`` was exported from (the ``inc`` quantizer quantizes it, not the ONNX file).
    ``reference_onnx``: the user's original model in fp32 (the accuracy reference; default ``fp32``).
    """
    from .inc import check_target

    for target in targets:  # refuse before any work: inc cannot serve TensorRT
        if cfg.quantizers.get(target, DEFAULT_QUANTIZER[target]) == "inc":
            check_target(target)
    reference = reference_metrics(reference_onnx or fp32, spec, samples, cfg.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="edgemm-quant-") as tmp:
        for target in targets:
            with step(f"INT8 for {target}"):
                res = quantize_target(target, fp32, spec, calib, samples, reference, cfg, Path(tmp) / target, model=model)
            rel_dir = DEST[target]
            files = install(res, w.path(rel_dir + "/x").parent, stem)
            rels = [f"{rel_dir}/{f.name}" for f in files]
            fmt = "openvino-ir" if rels[0].endswith(".xml") else "onnx"
            extra = {
                "quantizer": res.quantizer, "calibration_method": cfg.method, "kept_float": res.kept_float,
                "sensitivity": res.sensitivity, "budget": {"max_drop": cfg.max_drop, "relative": cfg.relative,
                                                           "met": res.budget_met, "drop_on_target": res.candidate.drop},
                "speed": {"guard": cfg.speed_guard and target in ("onnxruntime", "openvino"), "met": res.speed_met,
                          "int8_ms": res.candidate.latency_ms, "fp32_ms": res.fp32_latency_ms, "batch": 1, "threads": cfg.threads},
            }
            extra["cpu"] = {**cpu_int8().to_dict(), "reduce_range": res.reduce_range}
            if res.quantizer == "inc":  # measured and reported; INC keeps ops float for accuracy only
                extra["speed"].update(guard=False, note="inc: latency measured, no speed fallback")
            extra.update(extra_info or {})
            if res.validity is not None:
                extra["tensorrt_qdq_check"] = {"valid": not res.validity, "problems": res.validity}
            toolchain = {"onnxruntime": version_of("onnxruntime") or "?", "onnx": version_of("onnx") or "?"}
            if res.quantizer == "inc":
                toolchain.update({"neural-compressor": version_of("neural-compressor") or "?", "torch": version_of("torch") or "?"})
            if res.quantizer == "nncf":
                toolchain.update(nncf=version_of("nncf") or "?", openvino=version_of("openvino") or "?")
            backends = [target] if target != "tensorrt" else ["tensorrt", "onnxruntime"]
            for backend in backends:  # the TensorRT Q/DQ model is also run in ORT to prove its accuracy on CPU
                w.add_artifact(Artifact(rels[0], fmt, "int8", backend, target, method=method_name, toolchain=toolchain,
                                        extra=extra), files=rels)
            results.append(res)
    return results
