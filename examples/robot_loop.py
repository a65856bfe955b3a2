"""Robot-style loop: a controller called once per perception result, with a deadline.

    python examples/robot_loop.py BUNDLE [--video camera:0] [--audio mic:default] [--deadline-ms 100]
                                  [--seconds 10] [--controller my_robot.py:control]

The stream runs capture, pre-processing and inference on its own threads and calls the controller
from its delivery thread as ``control(result, late) -> command``. ``late`` is True when the result
arrives more than --deadline-ms after its frame was captured: the controller is told (the built-in
one then fails safe) and the result is counted as missed. A controller that raises is reported as
the controller's error, in one line naming it (traceback with -v), and the loop stops. Without
devices it runs on synthetic live sources (the defaults below) so you can see the timing.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
import traceback

import edgemm


def act(result, late: bool) -> str:
    """The built-in policy: a command derived from the spoken/seen digit; stale perception: stop."""
    if late:
        return "safe-stop"
    label, score = result.outputs["digit"]
    if score < 0.6:
        return "hold"
    return {"0": "stop", "1": "forward", "2": "left", "3": "right"}.get(label, "hold")


def load_controller(ref: str):
    """``path/to/file.py:function`` or ``package.module:function``."""
    where, _, name = ref.rpartition(":")
    if not where or not name:
        raise LookupError(f"--controller {ref!r} must look like my_robot.py:control or pkg.mod:control")
    if where.endswith(".py"):
        spec = importlib.util.spec_from_file_location("robot_controller", where)
        if spec is None or spec.loader is None:
            raise LookupError(f"--controller {ref!r}: cannot load {where}; give an existing .py file")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except FileNotFoundError:
            raise LookupError(f"--controller {ref!r}: no such file {where}; give an existing .py file") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise LookupError(f"--controller {ref!r}: cannot import {where} ({exc}); is it on PYTHONPATH?") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise LookupError(f"--controller {ref!r}: {where} has no function {name!r}; name one it defines")
    return fn


class Deadline:
    """Calls ``control`` once per result, measuring the result's age at arrival against the deadline."""

    def __init__(self, control, name: str, deadline_ms: float):
        self.control, self.name, self.deadline_ms = control, name, deadline_ms
        self.results = self.missed = 0
        self.user_error: BaseException | None = None

    def __call__(self, r) -> None:
        # t_wall: the stream's clock (time.monotonic) when the source handed the frame over, for live and file sources.
        age_ms = (time.monotonic() - r.frame.t_wall) * 1e3
        late = age_ms > self.deadline_ms
        self.results += 1
        self.missed += late
        try:
            command = self.control(r, late)
        except Exception as exc:  # the user's code failed, not edgemm: remember it to report it as theirs
            self.user_error = exc
            raise
        print(f"result {r.index:4d}  command {command!s:<9} age {age_ms:7.1f} ms"
              + (f"  MISSED deadline {self.deadline_ms:g} ms" if late else ""), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--video", default="synthetic:video?fps=30&frames=0&live=1&size=640x480")
    ap.add_argument("--audio", default="synthetic:audio?live=1&seconds=0")
    ap.add_argument("--deadline-ms", type=float, default=100.0, help="a result older than this at arrival is missed")
    ap.add_argument("--seconds", type=float, default=10.0, help="stop after this long (file sources may end sooner)")
    ap.add_argument("--controller", help="your callback, FILE.py:function or package.module:function (default: built-in)")
    ap.add_argument("-v", "--verbose", action="store_true", help="a failing controller's traceback")
    args = ap.parse_args()
    try:
        control, name = (load_controller(args.controller), args.controller) if args.controller else (act, "robot_loop.py:act")
    except LookupError as exc:
        ap.error(str(exc))  # one line, exit 2
    loop = Deadline(control, name, args.deadline_ms)
    try:
        # keep_frames: the result carries its frame, whose t_wall dates the capture for the deadline.
        stream = edgemm.Stream(args.bundle, video=args.video, audio=args.audio, callback=loop, keep_frames=True)
    except edgemm.EdgemmError as exc:
        print(f"robot_loop: {exc}", file=sys.stderr)
        return 2
    try:
        with stream:
            stream.wait(timeout=args.seconds)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - sorted below: the controller's failure or the stream's
        if loop.user_error is None:
            print(f"robot_loop: {exc}", file=sys.stderr)
            return 2
        err = loop.user_error
        print(f"robot_loop: error: the controller {name} raised {type(err).__name__}: {err}; fix it"
              + ("" if args.verbose else " (traceback with -v)"), file=sys.stderr)
        if args.verbose:
            traceback.print_exception(err)
        return 1
    st = stream.stats()
    pct = 100.0 * loop.missed / loop.results if loop.results else 0.0
    print(f"{loop.results} results, {loop.missed} missed the {args.deadline_ms:g} ms deadline ({pct:.0f}%); "
          f"dropped {st['dropped_frames']} frames; capture-to-result p50 {st['capture_to_result_ms']['p50']} ms",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
