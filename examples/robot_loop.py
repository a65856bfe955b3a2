"""Robot-style control loop: the perception stream runs on its own threads; the controller ticks at
its own rate and takes the *latest* result, never a backlog.

    python examples/robot_loop.py BUNDLE [--video camera:0] [--audio mic:default] [--hz 10] [--seconds 10]

Without devices it runs on synthetic live sources (the defaults below) so you can see the timing.
"""
from __future__ import annotations

import argparse
import sys
import time

import edgemm


def act(result) -> str:
    """The robot's policy: here, a command derived from the spoken/seen digit."""
    label, score = result.outputs["digit"]
    if score < 0.6:
        return "hold"
    return {"0": "stop", "1": "forward", "2": "left", "3": "right"}.get(label, "hold")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--video", default="synthetic:video?fps=30&frames=0&live=1&size=640x480")
    ap.add_argument("--audio", default="synthetic:audio?live=1&seconds=0")
    ap.add_argument("--hz", type=float, default=10.0, help="control rate")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-age-ms", type=float, default=200.0, help="older perception than this: fail safe")
    args = ap.parse_args()
    try:
        stream = edgemm.Stream(args.bundle, video=args.video, audio=args.audio, policy="latest")
    except edgemm.EdgemmError as exc:
        print(f"robot_loop: {exc}", file=sys.stderr)
        return 2
    period = 1.0 / args.hz
    ticks, stale = 0, 0
    with stream:
        stream.start()
        t_next = time.monotonic()
        t_end = t_next + args.seconds
        try:
            while time.monotonic() < t_end:
                r = stream.latest()  # non-blocking: the newest result, from the stream's threads
                now = time.monotonic()
                if r is None or (stream.live and (now - r.t_capture) * 1e3 > args.max_age_ms):
                    command, stale = "safe-stop", stale + 1
                    age = float("nan") if r is None else (now - r.t_capture) * 1e3
                else:
                    command, age = act(r), (now - r.t_capture) * 1e3 if stream.live else 0.0
                ticks += 1
                if ticks % max(1, int(args.hz)) == 0:
                    print(f"tick {ticks:4d}  command {command:<9} perception age {age:6.1f} ms  "
                          f"frame #{getattr(r, 'index', -1)}  dropped {stream.dropped_frames}")
                t_next += period
                time.sleep(max(0.0, t_next - time.monotonic()))
        except KeyboardInterrupt:
            pass
    st = stream.stats()
    print(f"{ticks} ticks at {args.hz} Hz, {stale} fail-safe; perception {st['results']} results, "
          f"capture-to-result p50 {st['capture_to_result_ms']['p50']} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
