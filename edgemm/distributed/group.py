"""The process group of a launched run and the collectives the fine-tune needs.

``start(launch)`` joins the group torchrun launched (gloo on CPU, NCCL on CUDA, every collective bounded
by ``EDGEMM_DIST_TIMEOUT``), records this rank's host and pid in the rendezvous store (so a rank that
dies without a word can be named) and turns SIGTERM into an interrupt (torchrun stops the other workers
with SIGTERM when one fails: they unwind and clean up instead of vanishing). ``current()`` is the
session this process started, None in the default one-process path. torch is imported only here, and
only when a launch is seen.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
from datetime import timedelta
from typing import Iterable

from ..errors import BackendUnavailable, EdgemmError
from ..lazy import lazy_import
from .env import Launch, backend_choice, timeout_s

_ACTIVE: "Session | None" = None


def current() -> "Session | None":
    """The distributed session of this process, or None (one process: the default)."""
    return _ACTIVE


def start(launch: Launch) -> "Session":
    """Join the launched group once per process (a second call returns the same session)."""
    global _ACTIVE
    if _ACTIVE is None:
        session = Session(launch, timeout_s())
        session.open()
        _ACTIVE = session
    return _ACTIVE


def close(exiting: bool = False) -> None:
    """Leave the group (the process group edgemm started is destroyed; signal handlers restored). ``exiting``: the
    process ends with its agreed exit code next, so the launcher's SIGTERM to the remaining workers (it follows any
    worker's failure) is ignored rather than turning that code into a death by signal."""
    global _ACTIVE
    session, _ACTIVE = _ACTIVE, None
    if session is not None:
        session.shutdown(exiting)


class Session:
    """One rank of a launched run: its place, the store, the collectives."""

    def __init__(self, launch: Launch, timeout: float):
        self.launch = launch
        self.rank, self.world_size = launch.rank, launch.world_size
        self.timeout_s = timeout
        self.backend = "gloo"
        self.device = "cpu"
        self.store = None
        self.signal: str | None = None  # the signal that interrupted this rank (SIGINT / SIGTERM), when one did
        self.outcome: dict | None = None  # what this rank ended with (edgemm.distributed.outcome)
        self.info: dict = {}  # what the fine-tunes recorded about the split (reports/pruning.json)
        self.peer_pids: dict[int, str] = {}  # "host pid" of each rank, known once every rank joined (see wrap)
        self._handlers: dict = {}
        self._own_group = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}"

    # ------------------------------------------------------------------ joining and leaving

    def open(self) -> None:
        torch = lazy_import("torch", "distributed fine-tuning (torchrun)")
        dist = torch.distributed
        if not dist.is_available():
            raise BackendUnavailable("this torch build has no torch.distributed; install a torch build with it "
                                     "(the PyPI and PyTorch-index wheels have it), or run edgemm in one process")
        timeout = timedelta(seconds=self.timeout_s)
        la = self.launch
        try:
            if dist.is_initialized():  # the user's own script started the group: edgemm joins it
                if dist.get_rank() != self.rank or dist.get_world_size() != self.world_size:
                    raise EdgemmError(f"the process group already started here is rank {dist.get_rank()} of "
                                      f"{dist.get_world_size()}, but RANK/WORLD_SIZE say {self.describe()}; start it from "
                                      "the same environment (init_process_group() with no arguments)")
                self.backend = str(dist.get_backend())
                base = dist.distributed_c10d._get_default_store()
            else:
                self.backend = backend_choice(torch.cuda.is_available())
                # torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE); otherwise rank 0 does, as env:// would
                tcp = dist.TCPStore(la.master_addr, la.master_port, self.world_size,
                                    is_master=la.is_main and not la.agent_store, timeout=timeout, wait_for_workers=False)
                base = tcp
                if self.backend == "nccl":
                    torch.cuda.set_device(la.local_rank)
                dist.init_process_group(self.backend, store=dist.PrefixStore(f"edgemm/{la.run_key}/pg", tcp),
                                        rank=self.rank, world_size=self.world_size, timeout=timeout)
                self._own_group = True
        except EdgemmError:
            raise
        except (RuntimeError, OSError, ValueError) as exc:
            raise EdgemmError(f"{self.describe()} could not join the process group at {la.master_addr}:{la.master_port} "
                              f"within {self.timeout_s:g}s: {type(exc).__name__}: {exc}; check that every rank was launched "
                              "by the same torchrun and that the address is reachable (EDGEMM_DIST_TIMEOUT sets the wait)") from exc
        if self.backend == "nccl":
            self.device = f"cuda:{la.local_rank}"
        self.store = dist.PrefixStore(f"edgemm/{la.run_key}/ctl", base)
        self.store.set(f"pid/{self.rank}", f"{socket.gethostname()} {os.getpid()}")
        self._install_signals()

    def shutdown(self, exiting: bool = False) -> None:
        for sig, old in self._handlers.items():
            try:
                signal.signal(sig, signal.SIG_IGN if exiting and sig == signal.SIGTERM else old)
            except (ValueError, OSError):
                pass
        self._handlers = {}
        if self._own_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self._own_group = False

    def _install_signals(self) -> None:
        """SIGINT and SIGTERM unwind as KeyboardInterrupt (work folders removed on the way out), and the rank
        remembers which one it got (its line says so)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, _frame):
            if self.outcome is not None and self.outcome.get("kind") != "ok":
                return  # already stopping (the launcher's SIGTERM after a failure): the clean-up runs to its end
            self.signal = signal.Signals(signum).name
            raise KeyboardInterrupt

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._handlers[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):
                pass

    # ------------------------------------------------------------------ collectives

    def _tensor(self, values, dtype):
        torch = lazy_import("torch")
        return torch.tensor(values, dtype=dtype, device=self.device)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (every rank gets the same number)."""
        import torch
        import torch.distributed as dist

        t = self._tensor([float(value)], torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (a deadline passed somewhere: all stop at the same step)."""
        import torch
        import torch.distributed as dist

        t = self._tensor([1 if flag else 0], torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank (pickled: small config objects only)."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, device=None if self.device == "cpu" else self.device)
        return box[0]

    def broadcast_tensors(self, tensors: Iterable) -> None:
        """Rank 0's values of ``tensors`` copied into every rank's (in place, one message per dtype)."""
        import torch.distributed as dist

        for group in _by_dtype(tensors):
            flat = self._flat(group)
            dist.broadcast(flat, src=0)
            _unflat(flat, group)

    def average_tensors(self, tensors: Iterable) -> None:
        """Every rank's floating-point ``tensors`` replaced by their mean over the ranks (in place)."""
        import torch.distributed as dist

        for group in _by_dtype(t for t in tensors if t.is_floating_point()):
            flat = self._flat(group)
            dist.all_reduce(flat)
            flat /= self.world_size
            _unflat(flat, group)

    def average_grads(self, params: Iterable) -> None:
        """The gradients of ``params`` averaged over the ranks, as DistributedDataParallel does in backward
        (a parameter without a gradient counts as zeros, so every rank sends the same layout)."""
        import torch

        grads = []
        for p in params:
            if not p.requires_grad:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        self.average_tensors(grads)

    def broadcast_module(self, module) -> None:
        """Rank 0's parameters and buffers in every rank's ``module`` (the final state_dict, byte for byte)."""
        self.broadcast_tensors([*(p.data for p in module.parameters()), *module.buffers()])

    def wrap(self, module):
        """``module`` in DistributedDataParallel (its construction broadcasts rank 0's state to every rank)."""
        import torch

        ids = [int(self.device.split(":")[1])] if self.device.startswith("cuda") else None
        ddp = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)  # buffers follow rank 0 each forward (default)
        self.remember_peers()
        return ddp

    def remember_peers(self) -> None:
        """Keep every rank's "host pid" here: when a peer dies, the launcher may take its store down with the run
        before this rank asks, and the dead rank must still be named."""
        for r in range(self.world_size):
            if r not in self.peer_pids and self.store is not None and self.store.check([f"pid/{r}"]):
                self.peer_pids[r] = self.store.get(f"pid/{r}").decode()

    def _flat(self, group: list):
        import torch

        return torch.cat([t.detach().reshape(-1).to(self.device) for t in group])

    # ------------------------------------------------------------------ the fine-tune's split

    def local_batch(self, batch: int, n: int) -> int:
        """Check and record how ``n`` training samples in global batches of ``batch`` split over the ranks: every
        rank draws the same global batches (one seed) and trains on its strided part of each (``rank::world_size``,
        as DistributedSampler splits), so the global batch and the steps per epoch stay the one-process ones and
        every sample of an epoch goes to one rank. Returns this rank's share of a full batch."""
        batch, n = int(batch), int(n)
        if n < self.world_size or batch < self.world_size:
            what = f"the training split has {n} sample(s)" if n < self.world_size else f"the batch size is {batch}"
            raise EdgemmError(f"{what}, fewer than the {self.world_size} ranks: every rank needs a part of each batch; "
                              "give a larger split or batch, or launch fewer ranks (torchrun --nproc-per-node)")
        starts = range(0, n - (batch // 2 if n > batch else 0), batch)  # as the trainer's batches (tiny last one dropped)
        sizes = [min(batch, n - s) for s in starts]
        mine = sum(len(range(self.rank, size, self.world_size)) for size in sizes)
        local = len(range(self.rank, batch, self.world_size))
        self.info.update({"samples": n, "samples_per_rank": mine, "dropped": n - sum(sizes), "batch": batch,
                          "batch_per_rank": local, "split": "strided part of each global batch (one seed on all ranks)"})
        return local


def _by_dtype(tensors: Iterable) -> list[list]:
    groups: dict = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    return list(groups.values())


def _unflat(flat, group: list) -> None:
    import torch

    with torch.no_grad():
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t).to(t.device))
            offset += n
