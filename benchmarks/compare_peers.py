"""edgemm beside its peers, on the same model (avnet), the same data and the same thread count.

    python benchmarks/compare_peers.py --json benchmarks/results/peers-<date>.json [--bundle DIR]
        [--threads 2] [--rounds 3] [--seconds 1.0]

Paths (each prepared once, then measured in its own fresh process, rounds interleaved A B C, A B C):
PyTorch eager fp32 (the reference), torch.compile (inductor), ONNX Runtime ``quantize_static`` with
its defaults (hand-written, as its docs show), OpenVINO + NNCF ``quantize`` with its defaults,
NVIDIA ModelOpt ONNX PTQ (``modelopt.onnx.quantization.quantize``, accuracy run in onnxruntime),
OpenVINO's ``benchmark_app`` reading edgemm's IR (a real client of edgemm's file: an edgemm row),
and every artifact of edgemm's bundle (``edgemm.export("export/avnet.toml", int8=True)`` unless
--bundle). A path that cannot run here keeps its row with null numbers and a ``skipped`` reason.
Inputs: the evaluation split pre-processed once by edgemm's training frontend (every path gets the
same tensors); latency at batch 1 on one held-out sample; ``top1`` = digit accuracy on the whole
split; ``agreement`` = fraction of samples whose digit prediction equals PyTorch eager fp32's.
Writes the JSON (rows + machine: CPU model and flags, versions, threads, command, date), an SVG
latency-vs-accuracy plot beside it (matplotlib) and prints the markdown table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "export" / "avnet.toml"
CALIB = ROOT / "calibration_data" / "avmnist" / "calib.npz"
EVAL = ROOT / "calibration_data" / "avmnist" / "eval.npz"
PEERS = ("torch_eager", "torch_compile", "ort_quantize_static", "openvino_nncf", "modelopt_onnx_ptq", "modelopt_torch_ptq")


# ----------------------------------------------------------------------------- data

def features(npz: Path, out: Path, n: int | None = None) -> None:
    """Raw frames + 8 kHz audio -> the model's input tensors by edgemm's own training frontend."""
    from edgemm.data.audio import preprocess_audio
    from edgemm.data.image import preprocess_image
    from edgemm.recipe import load_recipe

    spec = load_recipe(RECIPE).spec
    img, aud = spec.inputs[0].preprocessing, spec.inputs[1].preprocessing
    with np.load(npz) as z:
        k = len(z["digit"]) if n is None else min(n, len(z["digit"]))
        np.savez(out, image=np.concatenate([preprocess_image(z["image"][i], img) for i in range(k)]),
                 audio=np.concatenate([preprocess_audio(z["audio"][i], int(z["audio.sample_rate"]), aud) for i in range(k)]),
                 digit=z["digit"][:k])


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

    core = ov.Core()
    cm = core.compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    req = cm.create_infer_request()
    out0 = cm.outputs[0]

    def run(feeds):
        return req.infer(feeds)[out0]
    return run


def _torch_model(threads: int, compiled: bool):
    import torch

    from edgemm.recipe import import_callable

    torch.set_num_threads(threads)
    model = import_callable("edgemm.zoo.avnet:build")(checkpoint=str(ROOT / "edgemm" / "zoo" / "checkpoints" / "avnet.pt")).eval()
    fn = torch.compile(model) if compiled else model

    def run(feeds):
        with torch.no_grad():
            out = fn(torch.from_numpy(feeds["image"]), torch.from_numpy(feeds["audio"]))
        out = out[0] if isinstance(out, (tuple, list)) else (out["digit"] if isinstance(out, dict) else out)
        return out.numpy()
    return run


def make_runner(path: dict, threads: int):
    kind = path["kind"]
    if kind in ("torch_eager", "torch_compile"):
        return _torch_model(threads, kind == "torch_compile")
    if path["format"] == "onnx" and path.get("engine", "onnxruntime") == "onnxruntime":
        return _onnx_session(path["file"], threads)
    return _openvino_model(path["file"], threads)


def worker(path: dict, threads: int, seconds: float, eval_npz: str, accuracy: bool) -> dict:
    run = make_runner(path, threads)
    data = np.load(eval_npz)
    one = {"image": data["image"][:1], "audio": data["audio"][:1]}
    out = {}
    if accuracy:
        preds = []
        for i in range(len(data["digit"])):
            preds.append(int(np.argmax(run({"image": data["image"][i:i + 1], "audio": data["audio"][i:i + 1]}))))
        out["pred"] = preds
    for _ in range(20):
        run(one)
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 30:
        t0 = time.perf_counter()
        run(one)
        times.append((time.perf_counter() - t0) * 1e3)
    out["latencies_ms"] = times
    return out


# ----------------------------------------------------------------------------- preparation (once per path)

def prepare(kind: str, fp32_onnx: Path, calib_npz: Path, work: Path, threads: int) -> dict:
    """Build the path's artifact with the peer's documented defaults; returns {'file', 'format', 'size_mb'}."""
    calib = np.load(calib_npz)
    samples = [{"image": calib["image"][i:i + 1], "audio": calib["audio"][i:i + 1]} for i in range(len(calib["digit"]))]
    if kind in ("torch_eager", "torch_compile"):
        ck = ROOT / "edgemm" / "zoo" / "checkpoints" / "avnet.pt"
        return {"kind": kind, "format": "torch", "file": str(ck), "size_mb": ck.stat().st_size / 1e6}
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

        model = ov.convert_model(str(fp32_onnx))
        q = nncf.quantize(model, nncf.Dataset(samples))  # the defaults (preset PERFORMANCE, 300 subset size)
        out = work / "ov_nncf_int8.xml"
        ov.save_model(q, str(out))
        return {"kind": kind, "format": "openvino", "file": str(out),
                "size_mb": (out.stat().st_size + out.with_suffix(".bin").stat().st_size) / 1e6}
    if kind == "modelopt_onnx_ptq":
        try:
            from modelopt.onnx.quantization import quantize
        except ImportError as exc:
            raise ImportError(f"{exc}: ModelOpt's ONNX PTQ needs nvidia-modelopt[onnx], which pins onnxruntime-gpu and "
                              "cupy-cuda12x (not installable beside a CPU onnxruntime)") from None

        out = work / "modelopt_int8.onnx"
        quantize(str(fp32_onnx), quantize_mode="int8", calibration_data={k: calib[k] for k in ("image", "audio")},
                 output_path=str(out))
        return {"kind": kind, "format": "onnx", "file": str(out), "size_mb": out.stat().st_size / 1e6}
    if kind == "modelopt_torch_ptq":
        # ModelOpt's PyTorch PTQ (INT8_DEFAULT_CFG: symmetric int8, TensorRT-valid Q/DQ) exported by the legacy
        # exporter (STACK.md), accuracy and latency in onnxruntime. Its ONNX PTQ needs modelopt[onnx], which
        # pins onnxruntime-gpu and cupy-cuda12x: not installable beside a CPU onnxruntime.
        import modelopt.torch.quantization as mtq
        import torch

        from edgemm.recipe import import_callable

        torch.set_num_threads(threads)
        model = import_callable("edgemm.zoo.avnet:build")(checkpoint=str(ROOT / "edgemm" / "zoo" / "checkpoints" / "avnet.pt")).eval()

        def forward_loop(m):
            with torch.no_grad():
                for s in samples:
                    m(torch.from_numpy(s["image"]), torch.from_numpy(s["audio"]))

        q = mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop=forward_loop)
        out = work / "modelopt_torch_int8.onnx"
        ex = (torch.from_numpy(calib["image"][:2]), torch.from_numpy(calib["audio"][:2]))
        with torch.no_grad():
            torch.onnx.export(q, ex, str(out), dynamo=False, opset_version=17, input_names=["image", "audio"],
                              dynamic_axes={"image": {0: "batch"}, "audio": {0: "batch"}})
        return {"kind": kind, "format": "onnx", "file": str(out), "size_mb": out.stat().st_size / 1e6}
    raise ValueError(kind)


# ----------------------------------------------------------------------------- benchmark_app

def benchmark_app(xml: str, threads: int, seconds: float, pct: int) -> float:
    """OpenVINO's own client on edgemm's IR: its latency at percentile ``pct`` (ms), batch 1, one
    synchronous request on one stream at ``threads`` threads (like every other row). benchmark_app
    allows -nthreads only with -hint none, and prints latency in us or ms."""
    exe = Path(sys.executable).with_name("benchmark_app")
    shape = "image[1,3,64,64],audio[1,1,64,98]"
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


def benchmark_app_row(xml: dict | None, rows: dict, threads: int, rounds: int, seconds: float) -> dict:
    name = "benchmark_app on edgemm's OpenVINO IR"
    try:
        if xml is None:
            raise RuntimeError("the bundle has no OpenVINO IR")
        p50s, p90s = [], []
        for _ in range(rounds):
            p50s.append(benchmark_app(xml["file"], threads, max(2.0, seconds), 50))
            p90s.append(benchmark_app(xml["file"], threads, max(2.0, seconds), 90))
        src = rows.get(xml["name"], {})
        return {"name": name, "edgemm": True, "p50_ms": round(float(np.median(p50s)), 4), "p90_ms": round(float(np.median(p90s)), 4),
                "size_mb": round(xml["size_mb"], 3), "top1": src.get("top1"), "agreement": src.get("agreement"),
                "skipped": None, "note": "latency by OpenVINO benchmark_app (-hint none -api sync -nstreams 1; median of rounds); "
                                         "top1/agreement of the same IR"}
    except Exception as exc:  # noqa: BLE001
        return {"name": name, "edgemm": True, "p50_ms": None, "p90_ms": None, "size_mb": None, "top1": None,
                "agreement": None, "skipped": f"{type(exc).__name__}: {exc}"[:300]}


# ----------------------------------------------------------------------------- main

def _cpu() -> dict:
    model, flags = platform.processor(), set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "flags": sorted(flags & {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"})}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("edgemm", "torch", "onnxruntime", "openvino", "nncf", "nvidia-modelopt", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / f"peers-{dt.date.today().isoformat()}.json"))
    ap.add_argument("--bundle", help="an avnet bundle exported with --int8 (default: export one now)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--benchmark-app-only", action="store_true",
                    help="re-measure only the benchmark_app row of an existing --json (needs --bundle); rewrites it")
    args = ap.parse_args()
    if args.benchmark_app_only:
        result = json.loads(Path(args.json).read_text())
        from edgemm.bundle import Bundle

        bundle = Bundle.open(args.bundle)
        art = next((a for a in bundle.artifacts if a.backend == "openvino" and a.precision == "fp32" and a.path.endswith(".xml")), None)
        xml = art and {"name": f"edgemm {art.backend} {art.precision} ({art.path})", "file": str(bundle.root / art.path),
                       "size_mb": art.size_bytes(bundle.root) / 1e6}
        rows = {r["name"]: r for r in result["rows"]}
        row = benchmark_app_row(xml, rows, result["threads"], result["rounds"], result["seconds_per_round"])
        result["rows"] = [row if r["name"] == row["name"] else r for r in result["rows"]]
        result["benchmark_app_command"] = " ".join([Path(sys.executable).name, *sys.argv])
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(markdown(result))
        plot(result, Path(args.json).with_suffix(".svg"))
        return
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(worker(job["path"], job["threads"], job["seconds"], job["eval"], job["accuracy"])))
        return
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="edgemm-peers-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    print("features ...", flush=True)
    features(EVAL, work / "eval.npz")
    features(CALIB, work / "calib.npz", n=128)
    bundle_dir = Path(args.bundle) if args.bundle else work / "avnet"
    if not args.bundle:
        import edgemm

        print("edgemm.export(export/avnet.toml, int8=True) ...", flush=True)
        edgemm.export(str(RECIPE), output=bundle_dir, int8=True)
    from edgemm.bundle import Bundle

    bundle = Bundle.open(bundle_dir)
    fp32_onnx = next(bundle.root / a.path for a in bundle.artifacts if a.format == "onnx" and a.precision == "fp32")
    paths, rows = [], {}
    for kind in PEERS:
        try:
            paths.append(prepare(kind, fp32_onnx, work / "calib.npz", work, args.threads))
            paths[-1].update(name=kind, edgemm=False)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run here keeps its row
            rows[kind] = {"name": kind, "edgemm": False, "p50_ms": None, "p90_ms": None, "size_mb": None, "top1": None,
                          "agreement": None, "skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}
    for a in bundle.artifacts:
        if a.backend not in ("onnxruntime", "openvino") or a.graph != "main":
            continue
        engine = a.backend
        paths.append({"name": f"edgemm {a.backend} {a.precision} ({a.path})", "edgemm": True, "kind": "edgemm",
                      "format": "onnx" if a.path.endswith(".onnx") else "openvino", "engine": engine,
                      "file": str(bundle.root / a.path), "size_mb": a.size_bytes(bundle.root) / 1e6, "backend": a.backend,
                      "precision": a.precision})
    # interleaved rounds, each measurement in a fresh process
    lat = {p["name"]: [] for p in paths}
    pred = {}
    for r in range(args.rounds):
        for p in paths:
            print(f"round {r + 1}/{args.rounds}: {p['name']}", flush=True)
            job = {"path": p, "threads": args.threads, "seconds": args.seconds, "eval": str(work / "eval.npz"), "accuracy": r == 0}
            try:
                proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                                      env=env, timeout=600)
            except subprocess.TimeoutExpired:
                proc = subprocess.CompletedProcess([], 1, "", "worker timed out after 600 s")
            if proc.returncode != 0:
                rows[p["name"]] = {"name": p["name"], "edgemm": p["edgemm"], "p50_ms": None, "p90_ms": None, "size_mb": None,
                                   "top1": None, "agreement": None,
                                   "skipped": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]}
                continue
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            lat[p["name"]].extend(out["latencies_ms"])
            if "pred" in out:
                pred[p["name"]] = np.asarray(out["pred"])
    labels = np.load(work / "eval.npz")["digit"]
    ref = pred.get("torch_eager")
    for p in paths:
        if p["name"] in rows or not lat[p["name"]]:
            continue
        a = np.asarray(lat[p["name"]])
        pr = pred[p["name"]]
        rows[p["name"]] = {"name": p["name"], "edgemm": p["edgemm"], "p50_ms": round(float(np.percentile(a, 50)), 4),
                           "p90_ms": round(float(np.percentile(a, 90)), 4), "size_mb": round(p["size_mb"], 3),
                           "top1": round(float((pr == labels).mean()), 4),
                           "agreement": round(float((pr == ref).mean()), 4) if ref is not None else None,
                           "skipped": None, "calls": int(a.size), "file": Path(p["file"]).name}
    # OpenVINO's benchmark_app on edgemm's OpenVINO IR (fp32)
    xml = next((p for p in paths if p["edgemm"] and p["format"] == "openvino" and p["precision"] == "fp32"), None)
    rows["benchmark_app on edgemm's OpenVINO IR"] = benchmark_app_row(xml, rows, args.threads, args.rounds, args.seconds)
    ordered = [rows[k] for k in PEERS if k in rows] + [r for k, r in rows.items() if k not in PEERS]
    ref_top1 = rows.get("torch_eager", {}).get("top1")
    mine = [r for r in ordered if r["edgemm"] and r["p50_ms"] is not None and (ref_top1 is None or r["top1"] >= ref_top1 - 0.01)]
    best = min(mine, key=lambda r: r["p50_ms"]) if mine else None
    if best:
        best["best"] = True
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": {**_cpu(), "python": platform.python_version(),
              "platform": platform.platform(), "loadavg": list(os.getloadavg())}, "versions": _versions(), "threads": args.threads,
              "rounds": args.rounds, "seconds_per_round": args.seconds, "batch": 1, "samples": int(len(labels)),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "wall_s": round(time.monotonic() - t_start, 1),
              "reference": "torch_eager", "best_edgemm": best["name"] if best else None, "rows": ordered}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    plot(result, Path(args.json).with_suffix(".svg"))
    print(f"wrote {args.json}")


def markdown(result: dict) -> str:
    m = result["machine"]
    f = lambda v, d=3: "-" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [f"avnet, batch 1, {result['threads']} threads, {m['cpu']} ({' '.join(m['flags'])}), {result['date'][:10]}; "
             f"`{result['command']}` ({result['wall_s']:.0f} s)", "",
             "| path | edgemm | p50 ms | p90 ms | size MB | top-1 | agreement | note |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        note = r.get("skipped") and f"skipped: {r['skipped']}" or ("**edgemm best**" if r.get("best") else "")
        lines.append(f"| {r['name']} | {'yes' if r['edgemm'] else 'no'} | {f(r['p50_ms'])} | {f(r['p90_ms'])} | {f(r['size_mb'])} | "
                     f"{f(r['top1'], 4)} | {f(r['agreement'], 4)} | {note} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: no plot (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in result["rows"]:
        if r["p50_ms"] is None or r["top1"] is None:
            continue
        ax.scatter(r["p50_ms"], r["top1"], color="#c30" if r["edgemm"] else "#357", marker="*" if r.get("best") else "o", s=80)
        ax.annotate(r["name"], (r["p50_ms"], r["top1"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("latency p50, ms (batch 1)")
    ax.set_ylabel("top-1 (digit)")
    ax.set_title(f"avnet: edgemm (red) vs peers (blue), {result['threads']} threads, {result['date'][:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
