"""`edgemm bench`: latency/throughput/memory/size/accuracy of every artifact against the PyTorch baseline."""
from __future__ import annotations

ORDER = 50


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _ints(value: str, flag: str = "--batch") -> tuple[int, ...]:
    from ...errors import EdgemmError

    try:
        values = tuple(int(v) for v in _csv(value))
    except ValueError as exc:
        raise EdgemmError(f"{flag} {value!r}: give comma-separated integers, e.g. {flag} 1,8") from exc
    if not values or min(values) < 1:
        raise EdgemmError(f"{flag} {value!r}: give positive integers, e.g. {flag} 1,8")
    return values


def _rates(value: str) -> tuple[float, ...]:
    from ...errors import EdgemmError

    try:
        rates = tuple(float(v) for v in _csv(value))
    except ValueError as exc:
        raise EdgemmError(f"--stream-fps {value!r}: give comma-separated frame rates, e.g. --stream-fps 15,30,60") from exc
    if not rates or min(rates) <= 0 or max(rates) > 240:
        raise EdgemmError(f"--stream-fps {value!r}: frame rates must be in (0, 240], e.g. --stream-fps 15,30,60")
    return rates


def cmd_bench(args) -> int:
    import sys
    from pathlib import Path

    from ...bench.report import PLOT_FORMATS, format_table, write_csv, write_json, write_markdown, write_plot
    from ...bench.run import BenchConfig, benchmark
    from ...errors import EdgemmError
    from ...trust import allow_code

    batches = _ints(args.batch) if isinstance(args.batch, str) else args.batch
    for flag, value, ok, example in (("--rounds", args.rounds, args.rounds >= 1, "--rounds 2"),
                                     ("--seconds", args.seconds, args.seconds > 0, "--seconds 1.5"),
                                     ("--fps", args.fps, args.fps > 0, "--fps 30"),
                                     ("--stream-seconds", args.stream_seconds, args.stream_seconds > 0, "--stream-seconds 4"),
                                     ("--threads", args.threads, args.threads is None or args.threads >= 1, "--threads 4"),
                                     ("--extra-rounds", args.extra_rounds, args.extra_rounds >= 0, "--extra-rounds 3")):
        if not ok:
            raise EdgemmError(f"{flag} {value}: must be positive, e.g. {example}")
    if args.plot:  # checked before minutes of measuring
        if Path(args.plot).suffix.lower() not in PLOT_FORMATS:
            raise EdgemmError(f"--plot {args.plot}: use a .png, .svg or .pdf file name")
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise EdgemmError("--plot needs matplotlib (an edgemm dependency that is missing here): pip install matplotlib") from exc
    for flag in ("json", "csv", "markdown", "plot"):
        if getattr(args, flag):
            _check_writable(f"--{flag}", getattr(args, flag))  # before minutes of measuring, not after
    stream_fps = _rates(args.stream_fps)
    cfg = BenchConfig(backends=args.backends, precisions=args.precisions, batches=batches, threads=args.threads,
                      modes=args.modes, seconds=args.seconds, rounds=args.rounds, fps=args.fps, stream_fps=stream_fps,
                      stream_seconds=args.stream_seconds, streams=_ints(args.streams, "--streams"),
                      progress=not args.no_progress and sys.stderr.isatty(), extra_rounds=args.extra_rounds,
                      decide=args.decide)
    from ...modelfile import bench_source

    with allow_code(args.trust_code), bench_source(args.bundle) as bundle:  # a bare .onnx/.xml: a bundle of that file
        result = benchmark(bundle, cfg)
    print(format_table(result))
    if args.decide:
        from ...bench.decide import lines, record

        for line in lines(result["decisions"]):
            print(line)
        if result["decisions"]:
            record(args.bundle, result["decisions"], result["machine"])
    for flag, write in (("json", write_json), ("csv", write_csv), ("markdown", write_markdown), ("plot", write_plot)):
        f = getattr(args, flag)
        if f:
            write(result, f)
            print(f"{flag}: {f}")
    return 0


def _check_writable(flag: str, path: str) -> None:
    import os
    from pathlib import Path

    from ...errors import EdgemmError

    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise EdgemmError(f"{flag} {path}: that is a folder; give a file path, e.g. {flag} {p / ('bench.json' if flag == '--json' else 'bench.svg')}")
    if not parent.is_dir():
        raise EdgemmError(f"{flag} {path}: folder {parent} does not exist; create it or choose another path")
    if not os.access(p, os.W_OK) if p.exists() else not os.access(parent, os.W_OK | os.X_OK):
        raise EdgemmError(f"{flag} {path}: not writable (permission denied); choose another path")


def register(sub) -> None:
    b = sub.add_parser("bench", help="benchmark every artifact of a bundle against the PyTorch baseline",
                       description="Latency p50/p90/p99, throughput, peak RSS, size and top-1 per artifact x backend x batch, "
                                   "each measurement in a fresh process, rounds interleaved; the baseline (the original model "
                                   "in PyTorch eager fp32) is measured in the same run.",
                       epilog="example: edgemm bench build/avnet --batch 1,8 --json build/avnet-bench.json")
    b.add_argument("bundle", metavar="BUNDLE_DIR", help="a bundle, or a bare model file (.onnx, OpenVINO .xml) timed as it is")
    b.add_argument("--backends", type=_csv, default=None, metavar="B1,B2", help="torch,onnxruntime,openvino (default: all available)")
    b.add_argument("--precisions", type=_csv, default=None, metavar="P1,P2", help="fp32,fp16,int8 (default: all)")
    b.add_argument("--batch", default=(1, 8), metavar="N1,N2", help="batch sizes for model timing (default 1,8)")
    b.add_argument("--modes", type=_csv, default=("model", "end_to_end"), metavar="M1,M2",
                   help="model (pre-processed tensors in), end_to_end (raw frame + waveform in, labels out; batch 1) and/or "
                        "stream (the Stream runtime on a live-paced video + wav at each --stream-fps: capture-to-result "
                        "p50/p99, jitter, drops, A/V skew), throughput (--streams threads sharing one runtime: calls/s and "
                        "per-call latency); default model,end_to_end")
    b.add_argument("--threads", type=int, default=None, help="intra-op threads (default min(4, cores))")
    b.add_argument("--seconds", type=float, default=1.5, help="timed seconds per measurement and round (default 1.5)")
    b.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2; at least 6 with --decide)")
    b.add_argument("--extra-rounds", type=int, default=3,
                   help="while a model/end_to_end timing is unsteady (p90/p50 > 1.5 or round medians spread > 15 %%), up to "
                        "this many more rounds, within twice the planned time (default 3; 0: never)")
    b.add_argument("--decide", action="store_true",
                   help="re-make each int8 artifact's int8-vs-fp32 verdict on this machine from this run's paired rounds "
                        "(95 %% interval of the ratio of medians; slower only beyond the 5 %% tolerance with confidence) "
                        "and record it in the bundle's manifest (speed), which edgemm.load follows")
    b.add_argument("--fps", type=float, default=30.0, help="end_to_end: the stream's frame rate (default 30)")
    b.add_argument("--stream-fps", default="15,30,60", metavar="F1,F2", help="stream: frame rates (default 15,30,60)")
    b.add_argument("--streams", default="1,2,4,8", metavar="N1,N2",
                   help="throughput: threads calling one runtime at once, each with batch-1 feeds (default 1,2,4,8); OpenVINO "
                        "runs them with its THROUGHPUT hint, the others as they are (every runtime is thread-safe)")
    b.add_argument("--stream-seconds", type=float, default=4.0, help="stream: media seconds per run and round (default 4)")
    b.add_argument("--json", default=None, metavar="F", help="write the results as JSON")
    b.add_argument("--csv", default=None, metavar="F", help="write one CSV row per run")
    b.add_argument("--markdown", default=None, metavar="F", help="write a markdown table (and the end_to_end stage breakdown)")
    b.add_argument("--plot", default=None, metavar="F.png|svg|pdf",
                   help="latency per artifact + latency vs top-1 (matplotlib; format from the extension)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when stderr is not a terminal)")
    b.add_argument("--trust-code", action="store_true",
                   help="the bundle comes from a source you trust: build the torch baseline from the factory it names or "
                        "its torch.export program (unpickled); by default only edgemm zoo factories are used")
    b.set_defaults(func=cmd_bench)
