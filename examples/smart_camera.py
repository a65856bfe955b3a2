"""Smart camera: camera + microphone -> events, logged as JSON lines (and, with --post, every result sent to a URL).

    python examples/smart_camera.py BUNDLE [--video camera:0] [--audio mic:default] [--log events.jsonl]
                                    [--post http://127.0.0.1:8000/results]

An event is raised when a head's top label changes and holds for --hold consecutive results with a
score >= --min-score (debouncing flicker). With --post URL each result is one JSON line (frame time,
top label and score per head, capture-to-result latency) sent by HTTP POST from a background thread:
the camera loop never waits on the network, at most --post-queue lines wait to be sent (older ones are
dropped and counted when the endpoint is slow), and a failed POST is counted and reported on stderr
once per --report-every failures. Try it without devices on files or synthetic sources:

    python examples/smart_camera.py /tmp/avb --video clip.avi --audio clip.wav --realtime
"""
from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request

import edgemm

_STOP = object()


class Poster:
    """Sends JSON lines to ``url`` by HTTP POST on its own thread, through a bounded queue (newest kept)."""

    def __init__(self, url: str, *, timeout_s: float, max_queue: int, report_every: int):
        self.url, self.timeout_s, self.report_every = url, timeout_s, max(1, report_every)
        self.q: queue.Queue = queue.Queue(maxsize=max(1, max_queue))
        self.sent = self.failed = self.dropped = 0
        self.thread = threading.Thread(target=self._loop, name="smart-camera-post", daemon=True)
        self.thread.start()

    def submit(self, line: str) -> None:
        while True:
            try:
                self.q.put_nowait(line)
                return
            except queue.Full:  # the endpoint is slower than the camera: drop the oldest line, keep memory bounded
                try:
                    self.q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _loop(self) -> None:
        while True:
            line = self.q.get()
            if line is _STOP:
                return
            req = urllib.request.Request(self.url, data=line.encode("utf-8"), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    resp.read()
                self.sent += 1
            except (urllib.error.URLError, OSError, ValueError) as exc:  # HTTPError is a URLError
                self.failed += 1
                if self.failed == 1 or self.failed % self.report_every == 0:
                    reason = getattr(exc, "reason", None) or exc
                    print(f"smart_camera: POST to {self.url} failed ({self.failed} so far, reported every "
                          f"{self.report_every}): {reason}", file=sys.stderr, flush=True)

    def close(self, wait_s: float) -> None:
        """Stop after the queued lines, waiting at most ``wait_s`` (what is still queued then is dropped)."""
        self.submit(_STOP)  # type: ignore[arg-type]
        self.thread.join(wait_s)
        if self.thread.is_alive():
            self.dropped += self.q.qsize()


def result_line(r) -> str:
    """One result as a JSON line: wall time, frame time, top label/score per head, latency."""
    j = r.to_json()  # non-finite scores become null there, so the line is always valid JSON
    return json.dumps({"time": round(time.time(), 6), "index": j["index"], "t_capture": j["t_capture"],
                       "outputs": j["outputs"], "latency_ms": j["latency_ms"].get("capture_to_result"),
                       "flags": j["flags"]}, allow_nan=False)


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
    ap.add_argument("--post", metavar="URL", help="send every result as one JSON line by HTTP POST to URL")
    ap.add_argument("--post-timeout", type=float, default=2.0, help="seconds one POST may take")
    ap.add_argument("--post-queue", type=int, default=64, help="lines waiting to be sent at most (older ones dropped)")
    ap.add_argument("--report-every", type=int, default=10, help="report failed POSTs once per this many")
    args = ap.parse_args()
    if args.post and not args.post.startswith(("http://", "https://")):
        ap.error(f"--post {args.post!r} is not an http(s) URL; give one like http://127.0.0.1:8000/results")

    current, candidate, streak, events = None, None, 0, 0
    try:
        stream = edgemm.Stream(args.bundle, video=args.video, audio=args.audio, realtime=args.realtime)
    except edgemm.EdgemmError as exc:  # a camera/mic that is not there: one clear line
        print(f"smart_camera: {exc}", file=sys.stderr)
        return 2
    poster = Poster(args.post, timeout_s=args.post_timeout, max_queue=args.post_queue,
                    report_every=args.report_every) if args.post else None
    with stream, open(args.log, "a", encoding="utf-8") as log:
        try:
            for r in stream:
                if poster is not None:
                    poster.submit(result_line(r))
                if args.head not in r.outputs:
                    stream.close()
                    print(f"smart_camera: the bundle has no head {args.head!r}; use --head with one of: "
                          f"{', '.join(r.outputs)}", file=sys.stderr)
                    return 2
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
        finally:
            if poster is not None:
                poster.close(wait_s=args.post_timeout + 1.0)
    st = stream.stats()
    print(f"{events} events from {st['results']} results; dropped {st['dropped_frames']} frames; "
          f"capture-to-result p50 {st['capture_to_result_ms']['p50']} ms", file=sys.stderr)
    if poster is not None:
        print(f"posted {poster.sent} results to {args.post}; {poster.failed} failed, {poster.dropped} dropped "
              f"(endpoint slower than the stream)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
