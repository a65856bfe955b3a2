"""What the launcher tells each process: torchrun's environment variables, read without importing torch.

torchrun (and any launcher that follows its convention) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in every worker. ``WORLD_SIZE`` absent or 1 is the default path: one
process, nothing distributed is imported. edgemm's own knobs:

- ``EDGEMM_DIST_TIMEOUT``: seconds a collective (or a rank waiting for rank 0's result) may wait for the
  others before it fails in one line (default 1800, torch's own default for collectives);
- ``EDGEMM_DIST_BACKEND``: ``gloo`` or ``nccl`` (default: ``nccl`` where CUDA is available, else ``gloo``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from ..errors import EdgemmError

LAUNCH = "launch with torchrun, e.g. torchrun --nproc-per-node 2 -m edgemm export RECIPE --prune 0.5 -o B " \
         "(it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)"
BACKENDS = ("gloo", "nccl")
DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Launch:
    """One worker's place in a launched group."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    agent_store: bool  # torchrun hosts the rendezvous store in its agent (workers connect as clients)
    run_key: str  # unique per launch and restart: the store keys of one run never meet another's
    local_world_size: int = 1  # ranks on this node (they share its cores)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int(name: str, value: str | None, lo: int, hi: int | None = None) -> int:
    if value is None or not value.strip():
        raise EdgemmError(f"{name} is not set but WORLD_SIZE is; {LAUNCH}")
    try:
        n = int(value)
    except ValueError:
        raise EdgemmError(f"{name}={value!r} is not a whole number; {LAUNCH}") from None
    if n < lo or (hi is not None and n > hi):
        where = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise EdgemmError(f"{name}={n} is outside {where}; {LAUNCH}")
    return n


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The launch this process is part of, or None for one process (no ``WORLD_SIZE``, or ``WORLD_SIZE=1``)."""
    env = os.environ if environ is None else environ
    if not env.get("WORLD_SIZE", "").strip():
        return None
    world = _int("WORLD_SIZE", env.get("WORLD_SIZE"), 1)
    if world == 1:
        return None
    rank = _int("RANK", env.get("RANK"), 0, world - 1)
    local = _int("LOCAL_RANK", env.get("LOCAL_RANK", str(rank)), 0)
    addr = env.get("MASTER_ADDR", "").strip()
    if not addr:
        raise EdgemmError(f"MASTER_ADDR is not set but WORLD_SIZE={world}; {LAUNCH}")
    port = _int("MASTER_PORT", env.get("MASTER_PORT"), 1, 65535)
    agent = env.get("TORCHELASTIC_USE_AGENT_STORE", "").strip().lower() == "true"
    run_key = f"{env.get('TORCHELASTIC_RUN_ID', 'run')}/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    local_world = _int("LOCAL_WORLD_SIZE", env.get("LOCAL_WORLD_SIZE", str(world)), 1)
    return Launch(rank, world, local, addr, port, agent, run_key, local_world)


def launched_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank under a launcher (0 for one process); never raises (the CLI asks before parsing)."""
    env = os.environ if environ is None else environ
    try:
        return int(env.get("RANK", "0")) if int(env.get("WORLD_SIZE", "1") or 1) > 1 else 0
    except ValueError:
        return 0


def timeout_s(environ: Mapping[str, str] | None = None) -> float:
    env = os.environ if environ is None else environ
    raw = env.get("EDGEMM_DIST_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise EdgemmError(f"EDGEMM_DIST_TIMEOUT={raw!r} is not a positive number of seconds; set e.g. EDGEMM_DIST_TIMEOUT=1800")
    return value


def backend_choice(cuda: bool, environ: Mapping[str, str] | None = None) -> str:
    """gloo on CPU, NCCL where CUDA is available (``EDGEMM_DIST_BACKEND`` decides when set)."""
    env = os.environ if environ is None else environ
    raw = env.get("EDGEMM_DIST_BACKEND", "").strip().lower()
    if not raw:
        return "nccl" if cuda else "gloo"
    if raw not in BACKENDS:
        from ..errors import close_match_hint

        raise EdgemmError(f"EDGEMM_DIST_BACKEND={raw!r} is not a backend{close_match_hint(raw, BACKENDS)}; use gloo (CPU) or nccl (CUDA)")
    if raw == "nccl" and not cuda:
        raise EdgemmError("EDGEMM_DIST_BACKEND=nccl needs CUDA, and torch sees no CUDA device here; use gloo (CPU training)")
    return raw
