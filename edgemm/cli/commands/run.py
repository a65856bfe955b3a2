"""`edgemm run`: stream a camera/video + microphone/audio through a bundle's engine."""
from __future__ import annotations

import json
import os
import sys

ORDER = 60


def _check_display() -> None:
    from ...errors import EdgemmError

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and sys.platform.startswith("linux"):
        raise EdgemmError("--show needs a display, and $DISPLAY / $WAYLAND_DISPLAY is not set; "
                          "drop --show (use --json-lines F) or run it on a desktop session")
    import cv2

    try:
        cv2.namedWindow("edgemm run", cv2.WINDOW_NORMAL)
    except cv2.error as exc:
        raise EdgemmError("--show needs OpenCV with GUI support, this one is headless; "
                          "pip uninstall opencv-python-headless && pip install opencv-python, or drop --show") from exc


def _draw(result) -> bool:
    """Overlay the top labels and latency on the frame; False when the user closed the window (q/Esc)."""
    import cv2

    img = result.frame.image if result.frame.order == "BGR" else result.frame.image[..., ::-1]
    img = img.copy()
    if img.shape[0] < 240:
        scale = 240 / img.shape[0]
        img = cv2.resize(img, (int(img.shape[1] * scale), 240), interpolation=cv2.INTER_NEAREST)
    y = 20
    for head, (label, score) in result.outputs.items():
        cv2.putText(img, f"{head}: {label} {score:.2f}", (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1, cv2.LINE_AA)
        y += 20
    cv2.putText(img, f"{result.latency_ms['capture_to_result']:.1f} ms", (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
    cv2.imshow("edgemm run", img)
    return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)


def _line(r) -> str:
    heads = "  ".join(f"{h} {lab} ({s:.2f})" for h, (lab, s) in r.outputs.items())
    flags = f"  [{', '.join(r.flags)}]" if r.flags else ""
    return (f"t={r.t_capture:9.3f}s  #{r.index:<6d} {heads}  latency {r.latency_ms['capture_to_result']:7.1f} ms"
            f" (infer {r.latency_ms['infer']:.1f})  dropped {r.dropped_frames}{flags}")


def _check_json_lines(path: str) -> None:
    """Refuse a --json-lines path that cannot be written, before the bundle is loaded (nothing is created)."""
    from ...errors import EdgemmError

    if path == "-":
        return
    parent = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise EdgemmError(f"--json-lines {path}: that is a folder; give a file path, e.g. --json-lines {os.path.join(path, 'results.jsonl')}")
    if not os.path.isdir(parent):
        raise EdgemmError(f"--json-lines {path}: folder {parent} does not exist; create it or choose another path")
    if not os.access(path, os.W_OK) if os.path.exists(path) else not os.access(parent, os.W_OK | os.X_OK):
        raise EdgemmError(f"--json-lines {path}: not writable (permission denied); choose another path")


def _open_json_lines(path: str):
    from ...errors import os_error_line
    from ...errors import EdgemmError

    if path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise EdgemmError(f"--json-lines {path}: cannot write it ({os_error_line(exc)})") from exc


def json_line(obj) -> str:
    """One result as one line of valid JSON: non-finite numbers (a NaN score) become null."""
    from ...jsonsafe import finite_or_none

    return json.dumps(finite_or_none(obj), allow_nan=False)


WARMUP_CALLS = 3  # a runtime's first calls allocate and pick kernels (tens of ms): done before the first frame


def _runtime(args):
    """The bundle loaded for streaming, checked against the sources given (in CLI words) and warmed up.
    -> (runtime, warm-up milliseconds)."""
    import time

    from ...errors import EdgemmError
    from ...iospec import AudioPreprocess
    from ...runtime.runtime import GraphRuntimes, load

    rt = load(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads)
    try:
        if isinstance(rt, GraphRuntimes):
            raise EdgemmError(f"bundle {args.bundle} has graphs {', '.join(rt.graphs)}; edgemm run streams a single-graph "
                              "bundle (run a graph from Python: edgemm.load(B, graph=NAME))")
        audio = next((t for t in rt.inputs if isinstance(t.preprocessing, AudioPreprocess)), None)
        if audio is not None and not args.audio:
            raise EdgemmError(f"the model's input {audio.name!r} needs an audio source: add --audio SRC (mic:default, mic:N, "
                              "a wav/flac file, synthetic:audio)")
        feeds = rt.spec.example_feeds(batch=1)
        t0 = time.perf_counter()
        for _ in range(WARMUP_CALLS):
            rt.run(feeds)
        warm_ms = (time.perf_counter() - t0) * 1e3
    except BaseException:
        rt.close()
        raise
    return rt, warm_ms


def _say_started(rt, warm_ms: float) -> None:
    """One line on stderr (stdout may carry --json-lines -): which artifact, backend and precision runs, and its warm-up."""
    a = rt.artifact
    print(f"edgemm run: {a.path} ({a.backend} {a.precision}{', graph ' + a.graph if a.graph != 'main' else ''}) from "
          f"{rt.bundle.root}; warmed up with {WARMUP_CALLS} calls in {warm_ms:.0f} ms", file=sys.stderr, flush=True)


def cmd_run(args) -> int:
    from ...runtime.stream import Stream
    from ...trust import allow_code

    if args.show:
        _check_display()
    if args.json_lines:
        _check_json_lines(args.json_lines)
    out = None
    with allow_code(args.trust_code):
        rt, warm_ms = _runtime(args)
    try:
        stream = Stream(rt, video=args.video, audio=args.audio, policy=args.policy, realtime=args.realtime, stall=args.stall,
                        stall_ms=args.stall_ms, max_frames=args.max_frames, keep_frames=args.show,
                        reconnect=not args.no_reconnect)
    except BaseException:
        rt.close()
        raise
    if not args.quiet:  # only once the sources opened: a run refused before its first frame prints its one error line
        _say_started(rt, warm_ms)
    try:
        if args.json_lines:
            out = _open_json_lines(args.json_lines)
        for r in stream:
            if out is not None:
                out.write(json_line(r.to_json()) + "\n")
                out.flush()
            if not args.quiet and out is not sys.stdout:
                print(_line(r), flush=True)
            if args.show and not _draw(r):
                break
    finally:
        stream.close()
        rt.close()
        if out is not None and out is not sys.stdout:
            out.close()
    st = stream.stats()
    lat = st["capture_to_result_ms"]
    if not args.quiet:
        print(f"edgemm run: {st['results']} results from {st['frames_captured']} frames, dropped {st['dropped_frames']} "
              f"(policy {st['policy']}), capture-to-result p50 {lat['p50']} ms p99 {lat['p99']} ms", file=sys.stderr)
    return 0


def register(sub) -> None:
    r = sub.add_parser("run", help="run a bundle on live camera + microphone streams (or files)",
                       description="Stream video (+ audio) through a bundle's engine; print results as they come.")
    r.add_argument("bundle", metavar="BUNDLE_DIR")
    r.add_argument("--video", required=True, metavar="SRC",
                   help="camera:0, /dev/video0, a video file, rtsp://..., http://....mjpg, synthetic:video?fps=30")
    r.add_argument("--audio", metavar="SRC", help="mic:default, mic:N, a wav/flac file, synthetic:audio?rate=16000")
    r.add_argument("--backend", default=None, help="a backend name from `edgemm backends` (default: the bundle's fastest available)")
    r.add_argument("--precision", choices=["fp32", "fp16", "int8"])
    r.add_argument("--json-lines", metavar="F", help="write one JSON object per result to F ('-': stdout)")
    r.add_argument("--show", action="store_true", help="draw the results over the video in a window (needs a display)")
    r.add_argument("--policy", choices=["latest", "all"], help="drop policy (default: latest for live sources, all for files)")
    r.add_argument("--realtime", action="store_true", help="pace file sources like live ones")
    r.add_argument("--stall", choices=["wait", "zero", "skip"], default="wait",
                   help="when audio lags a frame: wait up to --stall-ms then zero-fill (default), zero-fill at once, or skip the frame")
    r.add_argument("--stall-ms", type=float, help="how long to wait for late audio (default: 50 live, no limit for files)")
    r.add_argument("--max-frames", type=int, metavar="N", help="stop after N captured frames")
    r.add_argument("--threads", type=int, help="inference threads")
    r.add_argument("--trust-code", action="store_true",
                   help="allow the torch backend to load the bundle's torch.export program (it is unpickled); "
                        "only for bundles from a source you trust")
    r.add_argument("--no-reconnect", action="store_true",
                   help="a network camera that drops ends the run with one line (default: reconnect with back-off)")
    r.set_defaults(func=cmd_run)
