"""Training across processes with torch.distributed: which process this is, and the collectives the Gaussian
trainer needs.

``torchrun --nproc_per_node N train.py ...`` starts N processes ("ranks") with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`join_world` opens the process group from them
(gloo on the CPU, NCCL on CUDA, one GPU a rank: ``cuda:LOCAL_RANK``). Without them (a plain ``python train.py``)
the :class:`World` is the one process and every collective is a no-op.

A collective that fails because another rank is gone (killed, crashed, its machine lost) is a :class:`PeerLost`
naming what was being exchanged, never a traceback; ``state_intact`` says whether this rank's model still holds
the state after the last finished step (so rank 0 may checkpoint it).
"""

from __future__ import annotations

import contextlib
import importlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor

from dff_gs.core.errors import ConfigError, DffError

TIMEOUT_MINUTES = 30
"""How long a collective (a barrier while rank 0 computes the teacher maps included) waits for a silent rank."""


class PeerLost(DffError):
    """A collective failed: another rank stopped. ``state_intact``: this rank's model, optimizers and densification
    state are still those after the last finished step (nothing of the failed step was applied)."""

    def __init__(self, message: str, state_intact: bool = False):
        super().__init__(message)
        self.state_intact = state_intact


def _core(message: str) -> str:
    """The gist of a gloo / NCCL error: its first line, less the source location and the advice after it."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    line = line.rsplit("] ", 1)[-1] if line.startswith("[") else line
    return line.split(". This is", 1)[0][:160]


def fingerprint(tensors: Sequence[Tensor]) -> list[float]:
    """Per tensor, the float64 sums of its values and of their squares: equal on two ranks when the tensors are
    (the same arithmetic on the same bits), different in practice as soon as one value differs."""
    out = []
    for t in tensors:
        d = t.detach().double()
        out += [float(d.sum()), float((d * d).sum())]
    return out


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when this process was not started by torchrun)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return max(int(raw), 1)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={raw!r}: must be a whole number (torchrun sets it)") from None


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one training run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> "World":
        """The process group torch.distributed holds, or the one process."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes (checkpoints, PLY, metrics, renders, logs) and computes teacher maps."""
        return self.rank == 0

    def share(self, items: Sequence) -> list:
        """This rank's contiguous share of a step's ``items`` (their number a multiple of :attr:`size`)."""
        n = len(items) // self.size
        return list(items[self.rank * n:(self.rank + 1) * n])

    def _collective(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except RuntimeError as e:  # gloo / NCCL: a peer closed its connection, or the timeout passed
            why = _core(str(e)) or type(e).__name__
            raise PeerLost(f"rank {self.rank} of {self.size}: {what} failed, another rank has stopped ({why})"
                           ) from None

    def sum_(self, tensor: Tensor, what: str) -> Tensor:
        """All-reduce ``tensor`` in place: the sum over ranks."""
        if self.size > 1:
            import torch.distributed as dist

            self._collective(what, lambda: dist.all_reduce(tensor, op=dist.ReduceOp.SUM))
        return tensor

    def max_(self, tensor: Tensor, what: str) -> Tensor:
        """All-reduce ``tensor`` in place: the element-wise maximum over ranks."""
        if self.size > 1:
            import torch.distributed as dist

            self._collective(what, lambda: dist.all_reduce(tensor, op=dist.ReduceOp.MAX))
        return tensor

    def barrier(self, what: str) -> None:
        if self.size > 1:
            import torch.distributed as dist

            self._collective(what, dist.barrier)

    def broadcast(self, obj: Any, what: str) -> Any:
        """Rank 0's ``obj`` on every rank (pickled)."""
        if self.size == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.main else None]
        self._collective(what, lambda: dist.broadcast_object_list(box, src=0))
        return box[0]

    def from_main(self, fn: Callable[[], Any], what: str) -> Any:
        """``fn()`` run on rank 0 alone; its result on every rank, or its error (a :class:`DffError` or an OSError:
        the run folder refused, unwritable) raised on rank 0 and a :class:`DffError` naming it on the others."""
        if self.size == 1:
            return fn()
        if self.main:
            try:
                result = ("ok", fn())
            except (DffError, OSError) as e:
                self.broadcast(("error", str(e)), what)
                raise
            return self.broadcast(result, what)[1]
        kind, value = self.broadcast(None, what)
        if kind == "error":
            raise DffError(f"rank {self.rank}: rank 0 stopped: {value}")
        return value

    @contextlib.contextmanager
    def main_first(self, what: str) -> Iterator[None]:
        """Rank 0 runs the body first (fills caches: the scene, its teacher maps); the others wait on a barrier and
        then run it (reading what rank 0 cached)."""
        if not self.main:
            self.barrier(f"waiting for rank 0 ({what})")
        yield
        if self.main:
            self.barrier(f"releasing the other ranks ({what})")

    def same_everywhere(self, values: Sequence[float], what: str) -> None:
        """Check that ``values`` (the number of Gaussians, a fingerprint of the parameters) are the same on every
        rank; a :class:`PeerLost` saying that the parameter sets diverged else."""
        if self.size == 1:
            return
        mine = torch.tensor(list(values), dtype=torch.float64)
        both = torch.cat([mine, -mine]).to(self._device())
        self.max_(both, f"comparing the {what}")
        high, low = both[:len(mine)].cpu(), -both[len(mine):].cpu()
        if not (torch.equal(high, mine) and torch.equal(low, mine)):
            raise PeerLost(f"rank {self.rank} of {self.size}: the ranks disagree on the {what} (from "
                           f"{low.tolist()} to {high.tolist()}); their parameter sets diverged")

    def _device(self) -> torch.device:
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def place(self, device: torch.device) -> torch.device:
        """The device this rank trains on: ``cuda:LOCAL_RANK`` for CUDA under torchrun (one GPU a rank)."""
        if self.size == 1 or device.type != "cuda":
            return device
        return torch.device("cuda", self.local_rank)


AUTO_BATCH_VIEWS = 0
"""``train.batch_views`` left to the run: one view per process (1 with plain python, N under torchrun's N)."""


def resolve_batch_views(cfg, size: int) -> None:
    """``train.batch_views=0`` (the default) becomes ``size``, one view per process, before the run's config is
    written: its ``config.yaml`` and checkpoint hold the number it trains with, so a resume under another number
    of processes keeps it (and is refused in one line where it does not divide). Under torchrun one printed line
    says so; plain python (``size`` 1) trains as it always has, one view a step, without a word."""
    if cfg.train.batch_views != AUTO_BATCH_VIEWS:
        return
    if cfg.resume:  # a checkpoint written before batch_views was saved (never 0 since): it trained one view a step
        cfg.train.batch_views = 1
        return
    cfg.train.batch_views = size
    if size > 1:
        print(f"train.batch_views={size}: one view per process (torchrun's {size} processes)")


def check_distributable(cfg, size: int) -> None:
    """What several processes or several views a step can train: the Gaussians (not the NeRF, not the lift), with
    ``train.batch_views`` a multiple of the number of processes (0: one view per process, always one)."""
    batch = cfg.train.batch_views
    if size > 1 or batch > 1:
        how = f"torchrun's {size} processes" if size > 1 else f"train.batch_views={batch}"
        if cfg.train.backbone != "gs":
            raise ConfigError(f"train.backbone={cfg.train.backbone}: the NeRF trains in one process on one batch of "
                              f"rays a step; {how} is for the Gaussians (run it with plain python, batch_views=1)")
        if cfg.lift.enabled:
            raise ConfigError(f"lift.enabled=true: the lift and its fine-tune run in one process, one view a step; "
                              f"{how} is for training Gaussians (run it with plain python, batch_views=1)")
    if batch % size:
        raise ConfigError(f"train.batch_views={batch}: must be a multiple of the number of processes ({size} under "
                          f"torchrun), each rank rendering batch_views / {size} views a step")


@contextlib.contextmanager
def join_world(cfg, device_type: Optional[str] = None) -> Iterator[World]:
    """The run's :class:`World`: torchrun's process group opened (gloo on the CPU, NCCL on CUDA) for the run and
    closed after it, or the one process. ``cfg`` is checked first (:func:`check_distributable`)."""
    size = env_world_size()
    check_distributable(cfg, size)
    import torch.distributed as dist

    if size == 1 or dist.is_initialized():
        yield World.current()
        return
    if device_type is None:
        device_type = "cuda" if cfg.train.device.startswith("cuda") or (
            cfg.train.device == "auto" and torch.cuda.is_available()) else "cpu"
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # torch._dynamo (imported by the first optimizer, gsplat, ...) keeps references to the process group when it is
    # imported after it: destroy_process_group then leaves gloo's worker threads running, and one of them releasing
    # the last collective's tensors while the interpreter exits aborts the process ("terminate called without an
    # active exception", SIGABRT; pytorch/pytorch#190489). Imported first, the group is destroyed and its threads
    # joined when the run ends.
    importlib.import_module("torch._dynamo")

    try:
        dist.init_process_group(backend, timeout=timedelta(minutes=TIMEOUT_MINUTES))
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"torchrun: could not join the other {size - 1} rank(s) with {backend} "
                          f"({str(e).strip().splitlines()[0][:160]})") from None
    try:
        yield World.current()
    finally:
        dist.destroy_process_group()
