"""Smart camera: camera + microphone -> events, logged as JSON lines.

    python examples/smart_camera.py BUNDLE [--video camera:0] [--audio mic:default] [--log events.jsonl]

An event is raised when a head's top label changes and holds for --hold consecutive results with a
score >= --min-score (debouncing flicker). Try it without devices on files or synthetic sources:

    python examples/smart_camera.py /tmp/avb --video clip.avi --audio clip.wav --realtime
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import edgemm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--video", default="camera:0")
    ap.add_argument("--audio", default="mic:default")
    ap.add_argument("--head", default="digit", help="the output head that raises events")
    ap.add_argument("--min-score", type=float, default=0.8)
    ap.add_argument("--hold", type=int, default=3, help="results a new label must hold before it is an event")
    ap.add_argument("--log", default="events.jsonl")
    ap.add_argument("--realtime", action="store_true", help="pace file sources like a live camera")
    args = ap.parse_args()

    current, candidate, streak, events = None, None, 0, 0
    try:
        stream = edgemm.Stream(args.bundle, video=args.video, audio=args.audio, realtime=args.realtime)
    except edgemm.EdgemmError as exc:  # a camera/mic that is not there: one clear line
        print(f"smart_camera: {exc}", file=sys.stderr)
        return 2
    with stream, open(args.log, "a", encoding="utf-8") as log:
        try:
            for r in stream:
                label, score = r.outputs[args.head]
                if score < args.min_score or r.flags:  # unsure, or audio was not real: no decision
                    candidate, streak = None, 0
                    continue
                streak = streak + 1 if label == candidate else 1
                candidate = label
                if streak == args.hold and label != current:
                    current = label
                    events += 1
                    event = {"time": time.time(), "t_capture": r.t_capture, "head": args.head, "label": label,
                             "score": round(score, 4), "others": {h: v[0] for h, v in r.outputs.items() if h != args.head},
                             "latency_ms": round(r.latency_ms["capture_to_result"], 2)}
                    log.write(json.dumps(event) + "\n")
                    log.flush()
                    print(f"[event {events}] t={r.t_capture:.3f}s {args.head}={label} ({score:.2f}) {event['others']}")
        except KeyboardInterrupt:
            pass
    st = stream.stats()
    print(f"{events} events from {st['results']} results; dropped {st['dropped_frames']} frames; "
          f"capture-to-result p50 {st['capture_to_result_ms']['p50']} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
