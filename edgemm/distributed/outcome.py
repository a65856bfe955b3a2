"""What a launched run ended with, the same on every rank, said once.

Each rank records its outcome in the rendezvous store: ``ok`` (rank 0: the bundle is written) or a
failure with the one line the CLI prints and its exit code. A failure caused by another rank (a
collective that broke because a peer stopped, torchrun's SIGTERM after a peer failed) takes the
peer's recorded failure; a peer that died without a word (SIGKILL, a crash in native code) is named
from the pids the ranks recorded. Only the first rank to claim the line prints it (``claim``), the
ranks != 0 wait for rank 0's result after their part of the fine-tune (``follow``), and at exit every
rank takes rank 0's exit code (``agree``).
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

from ..errors import EdgemmError, os_error_line
from .group import Session

EXIT = {"ok": 0, "error": 2, "interrupted": 130, "internal": 1}
POLL_S = 0.25
GRACE_S = 5.0  # how long a rank whose collective broke waits for the cause to show (a peer's record or exit)


class PeerFailed(EdgemmError):
    """Another rank failed first; this rank ends with its line (printed once, by whichever rank claims it)."""


class PeerInternalError(Exception):
    """Another rank hit a bug in edgemm first; this rank ends with the same exit code."""


class StoreGone(Exception):
    """The rendezvous store cannot be reached any more (the launcher, or the rank hosting it, is gone)."""


def _get(session: Session, key: str, strict: bool = False) -> str | None:
    """A control key's value, None when it is not set (or, unless ``strict``, when the store is gone); never blocks."""
    try:
        if session.store.check([key]):
            return session.store.get(key).decode()
    except Exception as exc:  # noqa: BLE001 - the store went away with the launcher: nothing more is known
        if strict:
            raise StoreGone(str(exc)) from exc
        return None
    return None


def _set(session: Session, key: str, value: str) -> None:
    try:
        session.store.set(key, value)
    except Exception:  # noqa: BLE001 - the store went away: the exit codes still agree where it matters (rank 0's)
        pass


def record(session: Session, kind: str, line: str) -> None:
    """This rank's outcome (``kind`` in EXIT), for the other ranks."""
    session.outcome = {"kind": kind, "line": line, "rank": session.rank}
    _set(session, f"outcome/{session.rank}", json.dumps(session.outcome))


def outcome_of(session: Session, rank: int) -> dict | None:
    raw = _get(session, f"outcome/{rank}")
    return json.loads(raw) if raw else None


def peer_failure(session: Session) -> dict | None:
    """The first failure another rank recorded (rank 0 first), or None."""
    for r in range(session.world_size):
        if r != session.rank:
            o = outcome_of(session, r)
            if o is not None and o["kind"] != "ok":
                return o
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:  # a zombie (dead, not yet reaped by the launcher) is dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def dead_peer(session: Session) -> tuple[int, int] | None:
    """(rank, pid) of another rank on this host whose process is gone, or None."""
    host = socket.gethostname()
    for r in range(session.world_size):
        if r == session.rank:
            continue
        raw = session.peer_pids.get(r) or _get(session, f"pid/{r}")
        if not raw:
            continue
        peer_host, pid = raw.rsplit(" ", 1)
        if peer_host == host and not _alive(int(pid)):
            return r, int(pid)
    return None


def _died(session: Session, rank: int, pid: int) -> EdgemmError:
    return EdgemmError(f"rank {rank} of {session.world_size} (pid {pid}) ended without a word (killed, or crashed in native "
                       "code); every rank stopped and nothing was written; run it again")


def _collective_failure(exc: BaseException) -> bool:
    try:
        import torch.distributed as dist

        if isinstance(exc, dist.DistError):
            return True
    except ImportError:
        return False
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection closed", "connection reset", "timed out"))


def describe(session: Session, exc: BaseException) -> tuple[str, str]:
    """(kind, the one line the CLI prints) of this rank's own exception."""
    if isinstance(exc, KeyboardInterrupt):
        how = f"{session.describe()} got {session.signal}" if session.signal else f"{session.describe()} was interrupted"
        return "interrupted", f"edgemm: interrupted ({how}; every rank stopped, nothing was written)"
    where = "" if re.search(r"\brank \d+ of \d+", str(exc)) else f" ({session.describe()})"  # which rank, unless it says
    if isinstance(exc, EdgemmError):
        return "error", f"edgemm: error: {exc}{where}"
    if isinstance(exc, OSError):
        return "error", f"edgemm: error: {os_error_line(exc)}{where}"
    return "internal", (f"edgemm: internal error: {type(exc).__name__}: {exc}{where} (this is a bug in edgemm; rerun with -v "
                        "for the traceback and please report it)")


def mirror(outcome: dict) -> BaseException:
    """The exception a rank ends with when another rank's failure is the run's."""
    if outcome["kind"] == "interrupted":
        return KeyboardInterrupt()
    message = outcome["line"].split(": ", 2)[-1] if outcome["line"].startswith("edgemm: error: ") else outcome["line"]
    return PeerFailed(message) if outcome["kind"] == "error" else PeerInternalError(message)


def settle(session: Session, exc: BaseException) -> BaseException:
    """The exception this rank ends with, recorded for the others: a peer's recorded failure first (it caused
    this one), then a peer that died without a word, else this rank's own (a broken collective in one line)."""
    peer, dead = peer_failure(session), dead_peer(session)
    if peer is None and dead is None and (isinstance(exc, KeyboardInterrupt) or _collective_failure(exc)):
        # A broken collective or the launcher's SIGTERM comes the instant a peer goes: give its record (or its
        # exit) a moment to show, so the line names the cause rather than the symptom.
        deadline = time.monotonic() + GRACE_S
        while peer is None and dead is None and time.monotonic() < deadline:
            time.sleep(0.05)
            peer, dead = peer_failure(session), dead_peer(session)
    if peer is not None:
        session.outcome = dict(peer)
        return mirror(peer)
    if dead is not None:
        out: BaseException = _died(session, *dead)
    elif _collective_failure(exc):
        out = EdgemmError(f"{session.describe()}: a collective of the distributed fine-tune failed ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:300]}); another rank stopped or stalled (its own line says why), "
                          f"or the network broke; EDGEMM_DIST_TIMEOUT={session.timeout_s:g}s bounds every wait")
    else:
        out = exc
    kind, line = describe(session, out)
    record(session, kind, line)
    return out


def follow(session: Session, output: Path):
    """On a rank != 0 after its part of the fine-tune: wait for rank 0's result and make it this rank's (the
    bundle rank 0 wrote, or rank 0's failure raised here). Bounded by EDGEMM_DIST_TIMEOUT; a rank 0 that died
    on this host is named at once."""
    from ..bundle import MANIFEST, Bundle

    deadline = time.monotonic() + session.timeout_s
    while True:
        try:
            raw = _get(session, "outcome/0", strict=True)
        except StoreGone as exc:
            raise EdgemmError(f"{session.describe()} lost the rendezvous store while waiting for rank 0's bundle ({exc}): rank 0 "
                              "or the launcher stopped; every rank stopped, see rank 0's line") from exc
        if raw is not None:
            got = json.loads(raw)
            break
        dead = dead_peer(session)
        if dead is not None and dead[0] == 0:
            raise _died(session, *dead)
        if time.monotonic() > deadline:
            raise EdgemmError(f"{session.describe()} waited {session.timeout_s:g}s for rank 0 to finish the bundle after the "
                              "fine-tune; raise EDGEMM_DIST_TIMEOUT if rank 0's export takes longer, or see rank 0's line")
        time.sleep(POLL_S)
    if got["kind"] != "ok":
        session.outcome = dict(got)
        raise mirror(got)
    session.outcome = dict(got)
    out = Path(output).absolute()
    if not (out / MANIFEST).is_file():
        raise EdgemmError(f"rank 0 wrote the bundle to {got['line']} on its host; {out} is not visible from "
                          f"{socket.gethostname()} (put -o on a file system every node shares to have it on every rank)")
    return Bundle.open(out)


def claim(session: Session | None, rank: int) -> bool:
    """Whether this rank prints the run's one error line: the first to ask does (a peer that already said
    the run succeeded means nothing is left to say). Without a session: rank 0 only."""
    if session is None:
        return rank == 0
    if not session.is_main and (session.outcome or {}).get("kind") == "ok":
        return False
    try:
        return int(session.store.add("said", 1)) == 1
    except Exception:  # noqa: BLE001 - the store went away: rank 0 speaks
        return session.is_main


def agree(session: Session, rc: int, wait_s: float = 60.0) -> int:
    """The exit code every rank ends with: rank 0's. Rank 0 records its own; a rank whose result came from rank 0
    (the bundle, or rank 0's failure) takes rank 0's; a rank that failed first keeps its own (the launcher stops
    the others)."""
    if session.is_main:
        _set(session, "exit/0", str(rc))
        return rc
    if (session.outcome or {}).get("rank", session.rank) == session.rank and (session.outcome or {}).get("kind") != "ok":
        return rc
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            raw = _get(session, "exit/0", strict=True)
        except StoreGone:
            break
        if raw is not None:
            return int(raw)
        if dead_peer(session) is not None:
            break
        time.sleep(POLL_S)
    return rc


def line_to_say(line: str) -> str | None:
    """The error line this rank prints at exit, or None when another rank says it (the CLI's one line): the
    run's settled line (a peer's failure, a dead peer) where there is one, else ``line``."""
    from .env import launched_rank
    from .group import current

    session = current()
    if session is not None and session.outcome and session.outcome.get("kind") not in (None, "ok"):
        line = session.outcome["line"]
    return line if claim(session, launched_rank()) else None


def finish(rc: int) -> int:
    """At the CLI's exit: the run's exit code (rank 0's), then leave the group."""
    from .group import close, current

    session = current()
    if session is None:
        return rc
    try:
        return agree(session, rc)
    except KeyboardInterrupt:  # the launcher stopping this rank while it waits: its own code stands
        return rc
    finally:
        close(exiting=True)
