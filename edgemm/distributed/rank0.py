"""The rank-0-writes rule around the export pipeline.

Under a launcher (``torchrun --nproc-per-node N -m edgemm export ...``) every rank runs the pipeline's
data reading and its fine-tuning stages (``TRAINING_STAGES``: the collectives of DistributedDataParallel),
and rank 0 alone runs the rest and writes the bundle. The other ranks then wait for rank 0's result and
make it theirs: the bundle it wrote, or its failure (same exit code). Without a launcher the pipeline
runs as it always did: nothing here imports torch or torch.distributed.
"""
from __future__ import annotations

from pathlib import Path

from .env import launch_from_env
from .group import Session, current, start
from .outcome import follow, record, settle

TRAINING_STAGES = ("prune", "qat")  # the stages whose fine-tunes every rank takes part in


class FollowerDone(BaseException):
    """Raised on a rank != 0 where its part of the export ends inside a stage (after QAT's fine-tune): the rest of
    that stage (export, quantization) and everything after it is rank 0's. A BaseException, so that no
    ``except Exception`` on the way takes it for a failure."""


def is_follower() -> bool:
    """True on a rank != 0 of a started session (it writes nothing)."""
    s = current()
    return s is not None and not s.is_main


def world_info() -> dict:
    """The keys reports/pruning.json records about the run: ``world_size`` and ``rank`` (the writer's: 0), plus
    how a distributed fine-tune split the data (samples per rank, batch per rank, backend)."""
    s = current()
    if s is None:
        return {"world_size": 1, "rank": 0}
    return {"world_size": s.world_size, "rank": s.rank,
            "distributed": {"backend": s.backend, "sampler": "same global batches on every rank (one seed), each rank its strided part", **s.info}}


_INSIDE = False  # run_ranked is running the pipeline in this process


def ranks_wanted() -> bool:
    """True when the pipeline must go through :func:`run_ranked`: launched (WORLD_SIZE > 1), not already inside it."""
    return not _INSIDE and launch_from_env() is not None


def run_ranked(run, resolved, cfg):
    """Run the pipeline ``run`` under the launch: rank 0 writes and ends with its result; every other rank takes
    part in the fine-tune, then waits for rank 0's result and ends with it."""
    global _INSIDE
    session = start(launch_from_env())
    _INSIDE = True
    try:
        if session.is_main:
            return _main(session, run, resolved, cfg)
        return _follower(session, run, resolved, cfg)
    finally:
        _INSIDE = False


def _main(session: Session, run, resolved, cfg):
    try:
        bundle = run(resolved, cfg)
    except BaseException as exc:
        out = settle(session, exc)
        if out is exc:
            raise
        raise out from exc
    record(session, "ok", str(bundle.root))
    return bundle


def _follower(session: Session, run, resolved, cfg):
    try:
        try:
            run(resolved, cfg)
        except FollowerDone:
            pass
        return follow(session, cfg.output)
    except BaseException as exc:
        out = settle(session, exc)
        _clean_after_dead_writer(session, cfg.output)
        if out is exc:
            raise
        raise out from exc


def _clean_after_dead_writer(session: Session, output) -> None:
    """Rank 0 died without unwinding (SIGKILL): its staging folder beside the output is removed here (named by
    its pid and marked as edgemm's), then whatever else a dead export left (edgemm.bundle.recover_interrupted)."""
    import shutil

    from ..bundle import STAGING_MARKER, recover_interrupted
    from ..log import logger
    from .outcome import dead_peer

    dead = dead_peer(session)
    if dead is None or dead[0] != 0:
        return
    out = Path(output).absolute()
    if not out.parent.is_dir():
        return
    for p in out.parent.glob(f".{out.name}.tmp-{dead[1]}-*"):
        if p.is_dir() and not p.is_symlink() and (p / STAGING_MARKER).is_file():
            shutil.rmtree(p, ignore_errors=True)
            logger.info("removed %s (rank 0's staging folder)", p.name)
    for line in recover_interrupted(out):
        logger.info("%s (left by rank 0)", line)
