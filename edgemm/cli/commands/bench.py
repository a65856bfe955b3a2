"""`edgemm bench`: latency/throughput/memory/size/accuracy of every artifact against the PyTorch baseline."""
from __future__ import annotations

ORDER = 50


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _ints(value: str) -> tuple[int, ...]:
    import argparse

    try:
        return tuple(int(v) for v in _csv(value))
    except ValueError as exc:  # argparse turns this into one usage-error line, exit 2
        raise argparse.ArgumentTypeError(f"{value!r}: give comma-separated integers, e.g. 1,8") from exc


def cmd_bench(args) -> int:
    from ...bench.report import format_table, write_json, write_svg
    from ...bench.run import BenchConfig, benchmark

    from ...errors import EdgemmError
    from ...trust import allow_code

    for flag, value, ok, example in (("--rounds", args.rounds, args.rounds >= 1, "--rounds 2"),
                                     ("--seconds", args.seconds, args.seconds > 0, "--seconds 1.5"),
                                     ("--threads", args.threads, args.threads is None or args.threads >= 1, "--threads 4")):
        if not ok:
            raise EdgemmError(f"{flag} {value}: must be positive, e.g. {example}")
    cfg = BenchConfig(backends=args.backends, precisions=args.precisions, batches=args.batch, threads=args.threads,
                      modes=args.modes, seconds=args.seconds, rounds=args.rounds)
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            _check_writable(flag, path)  # before minutes of measuring, not after
    with allow_code(args.trust_code):
        result = benchmark(args.bundle, cfg)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"json: {args.json}")
    if args.plot:
        write_svg(result, args.plot)
        print(f"plot: {args.plot}")
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
    b.add_argument("bundle", metavar="BUNDLE_DIR")
    b.add_argument("--backends", type=_csv, default=None, metavar="B1,B2", help="torch,onnxruntime,openvino (default: all available)")
    b.add_argument("--precisions", type=_csv, default=None, metavar="P1,P2", help="fp32,fp16,int8 (default: all)")
    b.add_argument("--batch", type=_ints, default=(1, 8), metavar="N1,N2", help="batch sizes for model timing (default 1,8)")
    b.add_argument("--modes", type=_csv, default=("model", "end_to_end"), metavar="M1,M2",
                   help="model (pre-processed tensors in) and/or end_to_end (raw frame + waveform in, labels out; batch 1)")
    b.add_argument("--threads", type=int, default=None, help="intra-op threads (default min(4, cores))")
    b.add_argument("--seconds", type=float, default=1.5, help="timed seconds per measurement and round (default 1.5)")
    b.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    b.add_argument("--json", default=None, metavar="F", help="write the results as JSON")
    b.add_argument("--plot", default=None, metavar="F.svg", help="write an SVG bar chart (batch 1)")
    b.add_argument("--trust-code", action="store_true",
                   help="the bundle comes from a source you trust: build the torch baseline from the factory it names or "
                        "its torch.export program (unpickled); by default only edgemm zoo factories are used")
    b.set_defaults(func=cmd_bench)
