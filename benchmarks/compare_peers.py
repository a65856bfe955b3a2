"""edgemm beside its peers, on the same reference models (avnet, avnet_m), the same data and the same thread count.

    python benchmarks/compare_peers.py [--json benchmarks/results/peers-<date>.json] [--models avnet,avnet_m]
        [--bundle DIR] [--prune RATIO] [--threads 2] [--rounds 3] [--seconds 1.0] [--cache build/compare_peers] [--fresh]

Models: ``--models`` names recipes ``export/<name>.toml`` (default: avnet, and avnet_m where its recipe exists);
every row carries its ``model`` and the verdict is given per model. Mobile peers (the ``peers-mobile`` extra, not
part of dev: litert-torch pins typing_extensions < 4.13, so run it in a virtual environment of its own): LiteRT
(litert-torch conversion, fp32 and PT2E static int8 with its default config, run by the LiteRT interpreter with
XNNPACK) and ExecuTorch with the XNNPACK delegate (fp32 and XNNPACKQuantizer int8); rows whose library is missing
keep their row with a ``skipped`` reason.

Paths: PyTorch eager fp32 (the reference), torch.compile (inductor), ONNX Runtime ``quantize_static``
with its defaults (hand-written, as its docs show), OpenVINO + NNCF ``quantize`` with its defaults,
NVIDIA ModelOpt ONNX PTQ (``modelopt.onnx.quantization.quantize``, run in onnxruntime) and ModelOpt's
PyTorch PTQ, OpenVINO's ``benchmark_app`` reading edgemm's IR (a real client of edgemm's file: an
edgemm row), and every artifact of edgemm's bundle (``edgemm.export("export/avnet.toml", int8=True)``;
with ``--prune R`` also ``edgemm.export(..., int8=True, prune=R)``'s artifacts, as edgemm rows).
Bundles are exported once into --cache and reused (``--fresh`` exports again); the JSON says which.

Every path is prepared once (artifact built, loaded or compiled, accuracy on the whole evaluation split
measured once) in its own process, which then stays idle until it is told to measure; preparations may
overlap (torch.compile compiles while the peers quantize), measurements never do: rounds are
interleaved A B C, A B C, one path measuring at a time, each in its own process at the same thread
count. PyTorch and the peers run with their libraries' defaults; edgemm's artifacts run through edgemm's
own Runtime (its session options), at the thread count their export measured fastest where it is within
``--threads`` (the shipped recipes set ``[export] tune_threads``; each row says its ``threads``). The verdict counts
edgemm's rows run by its Runtime (not the benchmark_app row). A path that cannot run here keeps its row with null
numbers and a ``skipped`` reason.
Inputs: the evaluation split pre-processed once by edgemm's training frontend (every path gets the
same tensors); latency at batch 1 on one held-out sample; ``top1`` = digit accuracy on the whole
split; ``agreement`` = fraction of samples whose digit prediction equals PyTorch eager fp32's.
Writes the JSON (rows, ``verdict``, machine: CPU model and flags, versions, threads, batch, command,
date, load average), a latency-vs-accuracy plot beside it (matplotlib) and prints the markdown table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's edgemm, also in the workers
PEERS = ("torch_eager", "torch_compile", "ort_quantize_static", "openvino_nncf", "modelopt_onnx_ptq", "modelopt_torch_ptq",
         "litert_fp32", "litert_int8", "executorch_xnnpack_fp32", "executorch_xnnpack_int8")
BENCHMARK_APP = "benchmark_app on edgemm's OpenVINO IR"
WORKER_TIMEOUT_S = 600.0


# ----------------------------------------------------------------------------- models

def model_info(name: str) -> dict:
    """What every path needs to know of a reference model, from its recipe ``export/<name>.toml`` (plain data: it
    travels to the workers as JSON)."""
    from edgemm.recipe import load_recipe

    path = ROOT / "export" / f"{name}.toml"
    recipe = load_recipe(path)
    m = recipe.model
    return {"name": name, "recipe": str(path), "factory": m.factory,
            "checkpoint": str(recipe.resolve(m.checkpoint)) if m.checkpoint else None,
            "calibration": str(recipe.resolve(recipe.data.calibration)), "evaluation": str(recipe.resolve(recipe.data.evaluation)),
            "inputs": [t.name for t in recipe.spec.inputs]}


def default_models() -> list[str]:
    """avnet, and avnet_m where its recipe and trained checkpoint are there."""
    ready = (ROOT / "export" / "avnet_m.toml").is_file() and (ROOT / "edgemm" / "zoo" / "checkpoints" / "avnet_m.pt").is_file()
    return ["avnet"] + (["avnet_m"] if ready else [])


def build_model(model: dict):
    from edgemm.recipe import import_callable

    return import_callable(model["factory"])(**({"checkpoint": model["checkpoint"]} if model["checkpoint"] else {})).eval()


# ----------------------------------------------------------------------------- data

def features(model: dict, npz: Path, out: Path, n: int | None = None) -> None:
    """Raw frames + 8 kHz audio -> the model's input tensors by edgemm's own training frontend."""
    from edgemm.frontends.audio import preprocess_audio
    from edgemm.frontends.image import preprocess_image
    from edgemm.recipe import load_recipe

    spec = load_recipe(model["recipe"]).spec
    img, aud = spec.inputs[0].preprocessing, spec.inputs[1].preprocessing
    with np.load(npz) as z:
        k = len(z["digit"]) if n is None else min(n, len(z["digit"]))
        image, audio, rate = z["image"][:k], z["audio"][:k], int(z["audio.sample_rate"])
        np.savez(out, image=np.concatenate([preprocess_image(image[i], img) for i in range(k)]),
                 audio=np.concatenate([preprocess_audio(audio[i], rate, aud) for i in range(k)]), digit=z["digit"][:k])


# ----------------------------------------------------------------------------- runners (in worker processes)

def _onnx_session(path: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return lambda feeds: sess.run([names[0]], feeds)[0]


def _openvino_model(path: str, threads: int):
    import openvino as ov

    cm = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    req, out0 = cm.create_infer_request(), cm.outputs[0]
    return lambda feeds: req.infer(feeds)[out0]


def _torch_model(model_desc: dict, threads: int, compiled: bool):
    import torch

    torch.set_num_threads(threads)
    model = build_model(model_desc)
    fn = torch.compile(model) if compiled else model
    names = model_desc["inputs"]

    def run(feeds):
        with torch.no_grad():
            out = fn(*[torch.from_numpy(feeds[n]) for n in names])
        out = out[0] if isinstance(out, (tuple, list)) else (out["digit"] if isinstance(out, dict) else out)
        return out.numpy()
    return run


def quantize_feed(array: np.ndarray, detail: dict) -> np.ndarray:
    """A float feed in the integer type of a quantized input, as LiteRT's documentation does it (x / scale + zero)."""
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail["quantization"]
    if not np.issubdtype(dtype, np.integer) or scale == 0:
        return np.asarray(array, dtype=dtype)
    info = np.iinfo(dtype)
    return np.clip(np.rint(np.asarray(array, dtype=np.float32) / np.float32(scale)) + zero, info.min, info.max).astype(dtype)


def dequantize_output(array: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if not np.issubdtype(array.dtype, np.integer) or scale == 0:
        return array
    return (array.astype(np.float32) - np.float32(zero)) * np.float32(scale)


def _litert_model(path: str, threads: int):
    """The LiteRT interpreter (XNNPACK, its default CPU delegate) on a .tflite file; an int8 model's int8 inputs get
    the float feed quantized with the input's own scale and zero-point (a plain cast costs 11 points on avnet)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=threads)
    interp.allocate_tensors()
    ins = sorted(interp.get_input_details(), key=lambda d: d["name"])  # litert-torch: serving_default_args_<i>:0
    out0 = min(interp.get_output_details(), key=lambda d: d["name"])  # output_0: the digit head

    def run(feeds):
        for d, a in zip(ins, feeds.values()):
            interp.set_tensor(d["index"], quantize_feed(a, d))
        interp.invoke()
        return dequantize_output(interp.get_tensor(out0["index"]), out0)
    return run


def _executorch_model(path: str, threads: int):
    """ExecuTorch's runtime on a .pte program (XNNPACK-delegated subgraphs, the rest in its portable kernels)."""
    import torch
    from executorch.runtime import Runtime

    import executorch.kernels.quantized  # noqa: F401 - the quantized ops an int8 program calls (else: "Failed to load method")

    try:  # the XNNPACK thread pool's size (ExecuTorch's pybindings; the default is one thread per core)
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)
    except ImportError:
        pass
    method = Runtime.get().load_program(Path(path)).load_method("forward")

    def run(feeds):
        out = method.execute([torch.from_numpy(a) for a in feeds.values()])
        return out[0].numpy()
    return run


def _edgemm_runtime(path: dict, threads: int):
    """edgemm's artifact as edgemm runs it: its Runtime (the backend's session options, e.g. onnxruntime's
    intra-op workers not spinning when the pool is as wide as the machine), the feeds checked."""
    from edgemm.bundle import Bundle
    from edgemm.runtime.runtime import Runtime

    bundle = Bundle.open(path["bundle"])
    art = next(a for a in bundle.artifacts if a.path == path["artifact"] and a.backend == path["backend"])
    # the thread count its export measured as fastest ([export] tune_threads) where it is within the budget, as
    # edgemm.load(B) runs it; else the budget, as every peer runs
    chosen = (art.extra.get("runner") or {}).get("threads")
    rt = Runtime(bundle, art, threads=None if isinstance(chosen, int) and chosen <= threads else threads)
    head = rt.spec.output_names[0]
    return lambda feeds: rt.run(feeds)[head]


def make_runner(path: dict, threads: int, model: dict):
    if path["kind"] == "edgemm":
        return _edgemm_runtime(path, threads)
    if path["kind"] in ("torch_eager", "torch_compile"):
        return _torch_model(model, threads, path["kind"] == "torch_compile")
    if path["format"] == "tflite":
        return _litert_model(path["file"], threads)
    if path["format"] == "pte":
        return _executorch_model(path["file"], threads)
    if path["format"] == "onnx" and path.get("engine", "onnxruntime") == "onnxruntime":
        return _onnx_session(path["file"], threads)
    return _openvino_model(path["file"], threads)


def _say(obj: dict) -> None:
    print("@@" + json.dumps(obj), flush=True)  # the parent reads only these lines (libraries print too)


def serve(job: dict) -> None:
    """A path's own process: load/compile once, predict the whole split once, then measure on request
    (``measure`` lines on stdin; 20 warm-up calls, then ``seconds`` of timed calls, at least 30)."""
    t0 = time.perf_counter()
    run = make_runner(job["path"], job["threads"], job["model"])
    data = np.load(job["eval"])
    arrays = {n: data[n] for n in job["model"]["inputs"]}  # in the model's argument order
    count = len(next(iter(arrays.values())))
    pred = [int(np.argmax(run({n: a[i:i + 1] for n, a in arrays.items()}))) for i in range(count)]
    _say({"pred": pred, "prepare_s": round(time.perf_counter() - t0, 2)})
    one = {n: a[:1] for n, a in arrays.items()}
    for line in sys.stdin:
        if line.strip() != "measure":
            break
        for _ in range(20):
            run(one)
        times, t_end = [], time.perf_counter() + job["seconds"]
        while time.perf_counter() < t_end or len(times) < 30:
            t1 = time.perf_counter()
            run(one)
            times.append((time.perf_counter() - t1) * 1e3)
        _say({"latencies_ms": times})


class Worker:
    """The parent's handle on one path's process (stderr to a log file; answers through a reader thread)."""

    def __init__(self, path: dict, threads: int, seconds: float, eval_npz: Path, log: Path, env: dict, model: dict):
        job = {"path": path, "threads": threads, "seconds": seconds, "eval": str(eval_npz), "model": model}
        self.log = log
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(job)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, env=env)
        self.answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("@@"):
                self.answers.put(json.loads(line[2:]))
        self.answers.put(None)

    def answer(self, timeout_s: float = WORKER_TIMEOUT_S) -> dict:
        try:
            out = self.answers.get(timeout=timeout_s)
        except queue.Empty:
            self.close()
            raise RuntimeError(f"no answer in {timeout_s:g} s") from None
        if out is None:
            tail = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
            raise RuntimeError(tail[-1] if tail else f"worker exited with {self.proc.wait()}")
        return out

    def measure(self) -> list[float]:
        self.proc.stdin.write("measure\n")
        self.proc.stdin.flush()
        return self.answer()["latencies_ms"]

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# ----------------------------------------------------------------------------- preparation (once per path)

def prepare(kind: str, fp32_onnx: Path, calib_npz: Path, work: Path, threads: int, model: dict) -> dict:
    """Build the path's artifact with the peer's documented defaults; returns {'file', 'format', 'size_mb'}."""
    calib = np.load(calib_npz)
    names = model["inputs"]
    samples = [{n: calib[n][i:i + 1] for n in names} for i in range(len(calib["digit"]))]
    if kind in ("torch_eager", "torch_compile"):
        ckpt = Path(model["checkpoint"])
        return {"kind": kind, "format": "torch", "file": str(ckpt), "size_mb": ckpt.stat().st_size / 1e6}
    if kind.startswith("litert_") or kind.startswith("executorch_"):
        return prepare_mobile(kind, calib, names, work, threads, model)
    if kind == "ort_quantize_static":
        from onnxruntime.quantization import CalibrationDataReader, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(samples)

            def get_next(self):
                return next(self.it, None)

        pre, out = work / "ort_pre.onnx", work / "ort_int8.onnx"
        quant_pre_process(str(fp32_onnx), str(pre))
        quantize_static(str(pre), str(out), Reader())  # the defaults: QDQ, per-tensor, MinMax, QUInt8 activations
        return {"kind": kind, "format": "onnx", "file": str(out), "size_mb": out.stat().st_size / 1e6}
    if kind == "openvino_nncf":
        import nncf
        import openvino as ov

        q = nncf.quantize(ov.convert_model(str(fp32_onnx)), nncf.Dataset(samples))  # the defaults (preset PERFORMANCE)
        out = work / "ov_nncf_int8.xml"
        ov.save_model(q, str(out))
        return {"kind": kind, "format": "openvino", "file": str(out),
                "size_mb": (out.stat().st_size + out.with_suffix(".bin").stat().st_size) / 1e6}
    if kind == "modelopt_onnx_ptq":
        # ModelOpt's ONNX PTQ (Q/DQ placement for TensorRT) calibrates in onnxruntime on the CPU; it imports
        # onnx_graphsurgeon and lief (the `dev` extra has them; its [onnx] extra would pin onnxruntime-gpu and
        # cupy-cuda12x). Its defaults but one: the float parts stay fp32 (its default, fp16, is for TensorRT on a
        # GPU; onnxruntime's CPU provider runs fp16 through casts).
        from modelopt.onnx.quantization import quantize

        out = work / "modelopt_int8.onnx"
        quantize(str(fp32_onnx), quantize_mode="int8", calibration_data={k: calib[k] for k in names},
                 calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=str(out))
        return {"kind": kind, "format": "onnx", "file": str(out), "size_mb": out.stat().st_size / 1e6}
    if kind == "modelopt_torch_ptq":
        # ModelOpt's PyTorch PTQ (INT8_DEFAULT_CFG: symmetric int8, TensorRT-valid Q/DQ) exported by the legacy
        # exporter (STACK.md), accuracy and latency in onnxruntime.
        import modelopt.torch.quantization as mtq
        import torch

        torch.set_num_threads(threads)
        net = build_model(model)

        def forward_loop(m):  # the same calibration samples, 32 per call
            with torch.no_grad():
                for i in range(0, len(calib["digit"]), 32):
                    m(*[torch.from_numpy(calib[n][i:i + 32]) for n in names])

        q = mtq.quantize(net, mtq.INT8_DEFAULT_CFG, forward_loop=forward_loop)
        out = work / "modelopt_torch_int8.onnx"
        ex = tuple(torch.from_numpy(calib[n][:2]) for n in names)
        with torch.no_grad():
            torch.onnx.export(q, ex, str(out), dynamo=False, opset_version=17, input_names=names,
                              dynamic_axes={n: {0: "batch"} for n in names})
        return {"kind": kind, "format": "onnx", "file": str(out), "size_mb": out.stat().st_size / 1e6}
    raise ValueError(kind)


def prepare_isolated(kind: str, *args) -> dict:
    """``prepare``; ModelOpt's in a child process: its ONNX PTQ replaces onnxruntime's calibrator functions
    process-wide, which breaks every later onnxruntime quantization in this process (the next model's
    ort_quantize_static peer)."""
    if not kind.startswith("modelopt"):
        return prepare(kind, *args)
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(prepare, (kind, *args))


def prepare_mobile(kind: str, calib, names: list[str], work: Path, threads: int, model: dict) -> dict:
    """LiteRT (litert-torch) and ExecuTorch (XNNPACK delegate) artifacts of the user's torch model, fp32 or PT2E static
    int8 with each library's documented quantizer config, calibrated on the same samples (32 per call: the graph is
    traced with a dynamic batch for calibration, then converted / lowered at batch 1, the shape they run)."""
    import torch

    torch.set_num_threads(threads)
    net = build_model(model)
    one = tuple(torch.from_numpy(calib[n][:1]) for n in names)
    two = tuple(torch.from_numpy(calib[n][:2]) for n in names)
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = tuple({0: batch} for _ in names)
    int8 = kind.endswith("_int8")

    def calibrated(quantizer):
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        torch.backends.mha.set_fastpath_enabled(False)  # the fused MHA op cannot be annotated (STACK.md)
        with torch.no_grad():
            prepared = prepare_pt2e(torch.export.export(net, two, dynamic_shapes=dynamic, strict=False).module(), quantizer)
            for i in range(0, len(calib["digit"]), 32):
                prepared(*[torch.from_numpy(calib[n][i:i + 32]) for n in names])
            return convert_pt2e(prepared, fold_quantize=False) if kind.startswith("litert") else convert_pt2e(prepared)

    if kind.startswith("litert"):
        import litert_torch

        out = work / f"{model['name']}-{kind}.tflite"
        with torch.no_grad():
            if not int8:
                edge = litert_torch.convert(net, one)
            else:  # litert-torch's documented PT2E flow: its quantizer, symmetric per-channel static int8
                from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
                from litert_torch.quantize.quant_config import QuantConfig

                quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
                edge = litert_torch.convert(calibrated(quantizer), one, quant_config=QuantConfig(pt2e_quantizer=quantizer))
        edge.export(str(out))
        return {"kind": kind, "format": "tflite", "file": str(out), "size_mb": out.stat().st_size / 1e6}
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    out = work / f"{model['name']}-{kind}.pte"
    if int8:  # ExecuTorch's documented XNNPACK PTQ: XNNPACKQuantizer, symmetric per-channel static int8
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

        quantized = calibrated(XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))
        import executorch.kernels.quantized  # noqa: F401 - registers the quantized ops to_executorch() needs (STACK.md)

        program = torch.export.export(quantized, one, strict=False)
    else:
        program = torch.export.export(net, one, strict=False)
    pte = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    out.write_bytes(pte.buffer)
    return {"kind": kind, "format": "pte", "file": str(out), "size_mb": out.stat().st_size / 1e6}


def edgemm_bundle(args, prune: float | None, model: dict) -> tuple[Path, dict]:
    """edgemm's bundle through the public API, exported once into --cache and reused after (``--fresh``: again).
    Its targets: the recipe's, plus litert where this environment can convert (``--no-litert``: not)."""
    if args.bundle and prune is None and model["name"] == "avnet":
        return Path(args.bundle), {"model": model["name"], "path": args.bundle, "reused": True, "export_s": None, "prune": None}
    targets = _targets(model, args)
    tag = "-litert" if "litert" in targets else ""
    out = Path(args.cache) / (f"{model['name']}-int8-prune{prune:g}{tag}" if prune is not None else f"{model['name']}-int8{tag}")
    recipe = os.path.relpath(model["recipe"], ROOT)
    call = (f"edgemm.export('{recipe}', int8=True, verify=False, targets={targets}"
            f"{f', prune={prune:g}' if prune is not None else ''})")
    info = {"model": model["name"], "path": str(out), "reused": (out / "manifest.json").is_file() and not args.fresh,
            "export_s": None, "prune": prune, "targets": targets, "export": call}
    if not info["reused"]:
        import edgemm

        print(f"{call} -> {out} ...", flush=True)
        t0 = time.monotonic()
        # verify=False: the artifacts are the same; this script measures every path's accuracy itself
        edgemm.export(model["recipe"], output=out, int8=True, verify=False, targets=targets,
                      **({"prune": prune} if prune is not None else {}))
        info["export_s"] = round(time.monotonic() - t0, 1)
    else:
        print(f"reusing {out} (--fresh exports it again)", flush=True)
    return out, info


def _targets(model: dict, args) -> list[str]:
    """The recipe's export targets, plus litert where litert-torch can convert here (an edgemm row then: its LiteRT
    artifacts came through edgemm's export)."""
    from edgemm.backends.registry import all_backends
    from edgemm.recipe import load_recipe

    from edgemm.errors import EdgemmError
    from edgemm.stages.quantize.registry import quantizer_for

    targets = list(load_recipe(model["recipe"]).export.targets)
    lt = all_backends().get("litert")
    if args.litert and lt is not None and lt.availability().available and lt.converter_availability().available:
        try:
            quantizer_for(lt)  # this edgemm's INT8 stage knows litert's quantizer
        except EdgemmError as exc:
            print(f"note: edgemm's bundle without litert: {exc}", flush=True)
            return targets
        targets.append("litert")
    return targets


def edgemm_paths(bundle_dir: Path, label: str) -> list[dict]:
    from edgemm.bundle import Bundle

    fmt = {".onnx": "onnx", ".xml": "openvino", ".tflite": "tflite"}
    bundle = Bundle.open(bundle_dir)
    return [{"name": f"{label} {a.backend} {a.precision} ({a.path})", "edgemm": True, "kind": "edgemm", "bundle": str(bundle.root),
             "artifact": a.path, "format": fmt[Path(a.path).suffix], "file": str(bundle.root / a.path),
             "size_mb": a.size_bytes(bundle.root) / 1e6, "backend": a.backend, "precision": a.precision,
             "chosen_threads": (a.extra.get("runner") or {}).get("threads")}
            for a in bundle.artifacts if a.backend in ("onnxruntime", "openvino", "litert") and a.graph == "main"]


# ----------------------------------------------------------------------------- benchmark_app

def benchmark_app(xml: str, threads: int, seconds: float, pct: int, shape: str) -> float:
    """OpenVINO's own client on edgemm's IR: its latency at percentile ``pct`` (ms), batch 1, one
    synchronous request on one stream at ``threads`` threads (like every other row). benchmark_app
    allows -nthreads only with -hint none, prints one percentile per run, and prints us or ms."""
    exe = Path(sys.executable).with_name("benchmark_app")
    p = subprocess.run([str(exe), "-m", xml, "-d", "CPU", "-hint", "none", "-api", "sync", "-nstreams", "1", "-nthreads", str(threads),
                        "-t", str(max(1, int(seconds))), "-shape", shape, "-latency_percentile", str(pct)],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError((p.stderr.strip() or p.stdout.strip()).splitlines()[-1])
    key = "median:" if pct == 50 else f"{pct} percentile:"
    for line in p.stdout.splitlines():
        low = line.lower()
        if key in low:
            value, unit = low.split(key)[1].split()[:2]
            return float(value) / (1000.0 if unit.startswith("us") else 1.0)
    raise RuntimeError(f"benchmark_app printed no {key!r} line")


# ----------------------------------------------------------------------------- main

def skipped_row(name: str, edgemm: bool, why: str) -> dict:
    return {"name": name, "edgemm": edgemm, "p50_ms": None, "p90_ms": None, "size_mb": None, "top1": None, "agreement": None,
            "skipped": why[:300]}


def verdict(rows: list[dict], ref_top1: float | None) -> dict:
    """edgemm's best (its fastest row within 1 point of the reference top-1) against every measured peer row:
    ``pass`` when it is faster than each and its top-1 is equal or better; ``pass_at_equal_or_better_top1`` (issue 26)
    when it is at least as fast as every peer whose top-1 is equal or better than its own."""
    # edgemm's rows as edgemm runs them (its Runtime): the benchmark_app row times edgemm's IR with another tool
    mine = [r for r in rows if r["edgemm"] and r["name"] != BENCHMARK_APP and r["p50_ms"] is not None and r["top1"] is not None
            and (ref_top1 is None or r["top1"] >= ref_top1 - 0.01)]
    peers = [r for r in rows if not r["edgemm"] and r["p50_ms"] is not None]
    if not mine:
        return {"best": None, "pass": False, "measured_peer_rows": len(peers), "why": "no edgemm row within 1 point of the reference"}
    best = min(mine, key=lambda r: r["p50_ms"])
    best["best"] = True
    per = {r["name"]: {"faster": best["p50_ms"] < r["p50_ms"], "top1_equal_or_better": best["top1"] >= r["top1"],
                       "speedup": round(r["p50_ms"] / best["p50_ms"], 3)} for r in peers}
    # issue 26's rule: at least as fast as every peer row whose top-1 is equal or better (a less accurate peer may be faster)
    rivals = {n: v for n, v in per.items() if not v["top1_equal_or_better"] or next(r for r in peers if r["name"] == n)["top1"] == best["top1"]}
    at_least = {n: best["p50_ms"] <= next(r for r in peers if r["name"] == n)["p50_ms"] for n in rivals}
    return {"best": best["name"], "best_p50_ms": best["p50_ms"], "best_top1": best["top1"], "reference_top1": ref_top1,
            "measured_peer_rows": len(peers), "enough_peer_rows": len(peers) >= 5,
            "pass": bool(peers) and all(v["faster"] and v["top1_equal_or_better"] for v in per.values()),
            "pass_at_equal_or_better_top1": bool(peers) and all(at_least.values()),
            "faster_peers_at_equal_or_better_top1": sorted(n for n, ok in at_least.items() if not ok), "peers": per}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / f"peers-{dt.date.today().isoformat()}.json"))
    ap.add_argument("--models", default=None, metavar="M1,M2",
                    help="reference models by recipe name, export/<name>.toml (default: avnet, and avnet_m where it exists)")
    ap.add_argument("--bundle", help="an avnet bundle exported with --int8 (default: exported once into --cache)")
    ap.add_argument("--prune", type=float, default=None, metavar="RATIO",
                    help="also edgemm's pruned bundle: edgemm.export(recipe, int8=True, prune=RATIO) (exported once into --cache)")
    ap.add_argument("--no-litert", dest="litert", action="store_false",
                    help="export edgemm's bundles without the litert target even where litert-torch is installed")
    ap.add_argument("--cache", default=str(ROOT / "build" / "compare_peers"), help="where exported bundles are kept for reuse")
    ap.add_argument("--fresh", action="store_true", help="export the bundles again even if --cache has them")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        serve(json.loads(args.worker))
        return
    if args.prune is not None and not 0.0 < args.prune < 1.0:
        print(f"compare_peers: error: --prune {args.prune:g}: give a ratio between 0 and 1, e.g. --prune 0.5", file=sys.stderr)
        sys.exit(2)
    names = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else default_models()
    missing = [m for m in names if not (ROOT / "export" / f"{m}.toml").is_file()]
    if missing or not names:
        print(f"compare_peers: error: --models {args.models!r}: no recipe export/{(missing or ['?'])[0]}.toml; "
              f"name recipes of export/ ({', '.join(p.stem for p in sorted((ROOT / 'export').glob('*.toml')))})", file=sys.stderr)
        sys.exit(2)
    models = [model_info(name) for name in names]
    untrained = [m for m in models if m["checkpoint"] and not Path(m["checkpoint"]).is_file()]
    if untrained:
        print(f"compare_peers: error: model {untrained[0]['name']!r} has no checkpoint {untrained[0]['checkpoint']}; "
              "train it first or leave it out of --models", file=sys.stderr)
        sys.exit(2)
    t_start = time.monotonic()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # every edgemm bundle first: a peer prepared in this process may patch the libraries edgemm uses (ModelOpt's ONNX
    # PTQ replaces onnxruntime's calibrator functions process-wide, and edgemm's own calibration then fails)
    exported = {}
    for model in models:
        t = time.monotonic()
        exported[model["name"]] = ([edgemm_bundle(args, None, model)]
                                   + ([edgemm_bundle(args, args.prune, model)] if args.prune is not None else []),
                                   round(time.monotonic() - t, 1))
    per_model = [run_model(model, args, env, *exported[model["name"]]) for model in models]
    from edgemm.bench.machine import machine_info

    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
              "threads": args.threads, "rounds": args.rounds, "seconds_per_round": args.seconds, "batch": 1,
              "models": names, "samples": {m["model"]: m["samples"] for m in per_model},
              "command": " ".join(["python", os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
              "python": sys.executable, "wall_s": round(time.monotonic() - t_start, 1),
              "phases_s": {m["model"]: m["phases_s"] for m in per_model}, "loadavg": {m["model"]: m["loadavg"] for m in per_model},
              "bundles": [info for m in per_model for info in m["bundles"]], "reference": "torch_eager",
              "verdicts": {m["model"]: m["verdict"] for m in per_model},
              "rows": [r for m in per_model for r in m["rows"]]}
    result["verdict"] = {"pass": all(v["pass"] for v in result["verdicts"].values()),
                         "pass_at_equal_or_better_top1": all(v.get("pass_at_equal_or_better_top1") for v in result["verdicts"].values()),
                         "best": {m: v["best"] for m, v in result["verdicts"].items()}}
    result["best_edgemm"] = result["verdict"]["best"]
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    plot(result, Path(args.json).with_suffix(".svg"))
    print(f"wrote {args.json} ({result['wall_s']:.0f} s)")


def run_model(model: dict, args, env: dict, bundles: list, export_s: float) -> dict:
    """Every path on one reference model: features, the peers prepared, edgemm's bundle(s) and the peers loaded,
    interleaved rounds."""
    t_start = time.monotonic()
    phases, load = {}, [list(os.getloadavg())]
    work = Path(args.cache) / "work" / model["name"]
    work.mkdir(parents=True, exist_ok=True)
    print(f"[{model['name']}] features ...", flush=True)
    features(model, Path(model["evaluation"]), work / "eval.npz")
    features(model, Path(model["calibration"]), work / "calib.npz", n=128)
    phases["features_s"] = round(time.monotonic() - t_start, 1)
    phases["edgemm_export_s"] = export_s
    from edgemm.bundle import Bundle

    first = Bundle.open(bundles[0][0])
    fp32_onnx = next(first.root / a.path for a in first.artifacts if a.format == "onnx" and a.precision == "fp32")
    rows, started = {}, {}  # name -> (path, its worker process)

    def start(p: dict) -> None:
        started[p["name"]] = (p, Worker(p, args.threads, args.seconds, work / "eval.npz", work / f"worker-{len(started)}.log", env,
                                        model))

    def peer(kind: str) -> None:
        t_kind = time.monotonic()
        print(f"[{model['name']}] preparing {kind} ...", flush=True)
        try:
            start({**prepare_isolated(kind, fp32_onnx, work / "calib.npz", work, args.threads, model), "name": kind, "edgemm": False})
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run here keeps its row
            rows[kind] = skipped_row(kind, False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        phases[f"prepare_{kind}_s"] = round(time.monotonic() - t_kind, 1)

    # Preparation only, nothing is measured until every path is ready: the paths that need no artifact built
    # start loading at once in their own processes (torch.compile compiles while the peers quantize).
    t = time.monotonic()
    for kind in PEERS[:2]:
        peer(kind)
    for bdir, info in bundles:
        for p in edgemm_paths(bdir, "edgemm" if info["prune"] is None else f"edgemm pruned {info['prune']:g}"):
            start(p)
    for kind in PEERS[2:]:
        peer(kind)
    phases["prepare_peers_s"] = round(time.monotonic() - t, 1)
    order = [k for k in PEERS if k in started] + [k for k in started if k not in PEERS]
    paths = [started[k][0] for k in order]
    workers, pred, prep_s = {}, {}, {}
    for name in order:
        print(f"[{model['name']}] waiting for {name} (loaded, its predictions on the split) ...", flush=True)
        p, w = started[name]
        try:
            ans = w.answer()
            pred[name], prep_s[name] = np.asarray(ans["pred"]), ans["prepare_s"]
            workers[name] = w
        except RuntimeError as exc:
            rows[name] = skipped_row(name, p["edgemm"], str(exc))
    phases["prepare_load_and_accuracy_s"] = round(time.monotonic() - t, 1)
    load.append(list(os.getloadavg()))
    # interleaved rounds: one path measures at a time, the others wait idle in their processes
    t = time.monotonic()
    xml = next((p for p in paths if p["edgemm"] and p["format"] == "openvino" and p["precision"] == "fp32"), None)
    data = np.load(work / "eval.npz")
    shape = ",".join(f"{n}[{','.join(map(str, (1, *data[n].shape[1:])))}]" for n in model["inputs"])
    lat = {name: [] for name in workers}
    round_p50 = {name: [] for name in workers}
    app: dict[str, list[float]] = {"p50": [], "p90": []}
    for r in range(args.rounds):
        print(f"[{model['name']}] round {r + 1}/{args.rounds}", flush=True)
        for name, w in list(workers.items()):
            try:
                times = w.measure()
                lat[name].extend(times)
                round_p50[name].append(round(float(np.median(times)), 4))
            except RuntimeError as exc:
                rows[name] = skipped_row(name, next(p["edgemm"] for p in paths if p["name"] == name), str(exc))
                del workers[name]
        if xml is not None and "app" not in rows:
            try:
                app["p50"].append(benchmark_app(xml["file"], args.threads, max(2.0, args.seconds), 50, shape))
                app["p90"].append(benchmark_app(xml["file"], args.threads, max(2.0, args.seconds), 90, shape))
            except Exception as exc:  # noqa: BLE001
                rows["app"] = skipped_row(BENCHMARK_APP, True, f"{type(exc).__name__}: {exc}")
    for w in workers.values():
        w.close()
    phases["measure_s"] = round(time.monotonic() - t, 1)
    load.append(list(os.getloadavg()))
    labels = data["digit"]
    ref = pred.get("torch_eager")
    for p in paths:
        if p["name"] in rows or not lat.get(p["name"]):
            continue
        a, pr = np.asarray(lat[p["name"]]), pred[p["name"]]
        rows[p["name"]] = {"name": p["name"], "edgemm": p["edgemm"], "p50_ms": round(float(np.percentile(a, 50)), 4),
                           "p90_ms": round(float(np.percentile(a, 90)), 4), "size_mb": round(p["size_mb"], 3),
                           "top1": round(float((pr == labels).mean()), 4),
                           "agreement": round(float((pr == ref).mean()), 4) if ref is not None else None,
                           "skipped": None, "calls": int(a.size), "file": Path(p["file"]).name,
                           "round_p50_ms": round_p50[p["name"]], "prepare_s": prep_s.get(p["name"]),
                           "threads": min(p.get("chosen_threads") or args.threads, args.threads)}
    src = rows.get(xml["name"], {}) if xml else {}
    rows["app"] = rows.get("app") or (skipped_row(BENCHMARK_APP, True, "the bundle has no OpenVINO fp32 IR") if xml is None else {
        "name": BENCHMARK_APP, "edgemm": True, "p50_ms": round(float(np.median(app["p50"])), 4),
        "p90_ms": round(float(np.median(app["p90"])), 4), "size_mb": round(xml["size_mb"], 3), "top1": src.get("top1"),
        "agreement": src.get("agreement"), "skipped": None,
        "note": "latency by OpenVINO benchmark_app (-hint none -api sync -nstreams 1; median of rounds); top1/agreement of the same IR"})
    ordered = [rows[k] for k in PEERS if k in rows] + [rows[p["name"]] for p in paths if p["name"] in rows and not p["name"] in PEERS]
    ordered.append(rows["app"])
    ordered = [{"model": model["name"], **r} for r in ordered]
    ref_top1 = rows.get("torch_eager", {}).get("top1")
    phases["total_s"] = round(time.monotonic() - t_start, 1)
    return {"model": model["name"], "rows": ordered, "verdict": verdict(ordered, ref_top1), "phases_s": phases, "loadavg": load,
            "bundles": [info for _, info in bundles], "samples": int(len(labels))}


def markdown(result: dict) -> str:
    m = result["machine"]
    f = lambda x, d=3: "-" if x is None else (f"{x:.{d}f}" if isinstance(x, float) else str(x))  # noqa: E731
    lines = [f"{', '.join(result['models'])}, batch 1, {result['threads']} threads, {m['cpu']} ({' '.join(m['isa'])}), "
             f"{result['date'][:10]}; `{result['command']}` ({result['wall_s']:.0f} s, load average {m['loadavg']})", "",
             "| model | path | edgemm | p50 ms | p90 ms | size MB | top-1 | agreement | note |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        note = r.get("skipped") and f"skipped: {r['skipped']}" or ("**edgemm best**" if r.get("best") else "")
        lines.append(f"| {r['model']} | {r['name']} | {'yes' if r['edgemm'] else 'no'} | {f(r['p50_ms'])} | {f(r['p90_ms'])} | "
                     f"{f(r['size_mb'])} | {f(r['top1'], 4)} | {f(r['agreement'], 4)} | {note} |")
    lines.append("")
    for model, v in result["verdicts"].items():
        lines.append(f"{model}: verdict {'pass' if v['pass'] else 'FAIL'}, at equal or better top-1 "
                     f"{'pass' if v.get('pass_at_equal_or_better_top1') else 'FAIL'} (edgemm best: {v['best']}; "
                     f"{v['measured_peer_rows']} measured peer rows"
                     + (f"; faster at equal or better top-1: {', '.join(v['faster_peers_at_equal_or_better_top1'])}"
                        if v.get("faster_peers_at_equal_or_better_top1") else "") + ")")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: no plot (pip install matplotlib)")
        return
    models = result["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(8 * len(models), 5), squeeze=False)
    for ax, model in zip(axes[0], models):
        for r in result["rows"]:
            if r["model"] != model or r["p50_ms"] is None or r["top1"] is None:
                continue
            ax.scatter(r["p50_ms"], r["top1"], color="#c30" if r["edgemm"] else "#357", marker="*" if r.get("best") else "o", s=80)
            ax.annotate(r["name"], (r["p50_ms"], r["top1"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
        ax.set_xlabel("latency p50, ms (batch 1)")
        ax.set_ylabel("top-1 (digit)")
        ax.set_title(f"{model}: edgemm (red) vs peers (blue), {result['threads']} threads, {result['date'][:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
