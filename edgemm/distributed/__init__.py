"""Distributed fine-tuning on torch.distributed: ``torchrun --nproc-per-node N -m edgemm export ...``.

- ``env``: the launcher's environment (RANK, WORLD_SIZE, ...) read without torch;
- ``group``: the session of one rank (process group, store, collectives: means of losses, broadcasts of
  the final state, gradient averaging, DistributedDataParallel, each rank's strided part of every global batch);
- ``outcome``: what the run ended with, the same on every rank, said in one line by one rank;
- ``rank0``: the rank-0-writes rule around the pipeline.

One process (no ``WORLD_SIZE``, or 1) is the default path: nothing here imports torch.distributed there.
torch.distributed ships with torch, so the ``distributed`` extra installs nothing more.
"""
from __future__ import annotations

from .env import Launch, launch_from_env, launched_rank
from .group import Session, close, current
from .rank0 import TRAINING_STAGES, FollowerDone, is_follower, ranks_wanted, run_ranked, world_info

__all__ = ["Launch", "Session", "TRAINING_STAGES", "FollowerDone", "close", "current", "is_follower", "launch_from_env",
           "launched_rank", "ranks_wanted", "run_ranked", "world_info"]
