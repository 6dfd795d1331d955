"""Distributed in one place: rank, world size and the few collective steps advrp2k needs.

Under ``torchrun`` (``WORLD_SIZE`` > 1) advrp2k joins the process group torchrun set up (NCCL
on GPUs, gloo on CPUs); in a single process every function here is a no-op, so the trainer
and the evaluator call them unconditionally at a handful of points: shard these example
indices (disjoint, by global index, no padding), gather these per-example records, broadcast
this decision, only the main process writes or shows progress.

torch is imported only once there is something distributed to do, so the commands that never
touch a model (``--help``, ``leaderboard build``) start without it.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def init_from_env() -> None:
    """Join torchrun's process group when launched by it with several processes."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import torch
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # "cuda" is then this rank's GPU
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def _dist():
    """torch.distributed if it was imported (a process group exists only then), else None."""
    return sys.modules.get("torch.distributed")


def active() -> bool:
    dist = _dist()
    return dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return _dist().get_rank() if active() else 0


def world_size() -> int:
    return _dist().get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def owned(n: int) -> torch.Tensor:
    """Bool mask of the examples this process attacks: global index modulo world size."""
    import torch

    return torch.arange(n) % world_size() == rank()


def owned_parts(n: int) -> list[torch.Tensor]:
    """Every process's examples (``owned`` of each rank, in rank order)."""
    import torch

    return [torch.arange(r, n, world_size()) for r in range(world_size())]


def all_gather(obj) -> list:
    """``obj`` from every process, in rank order (``[obj]`` in a single process)."""
    if not active():
        return [obj]
    out = [None] * world_size()
    _dist().all_gather_object(out, obj)
    return out


def broadcast(obj, src: int = 0):
    """The main process's ``obj`` on every process."""
    if not active():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src)
    return box[0]


def any_true(flag: bool) -> bool:
    """True on every process if it is true on any (a stop request, an error)."""
    if not active():
        return flag
    import torch

    dist = _dist()
    t = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier() -> None:
    if active():
        _dist().barrier()


def shutdown(clean: bool) -> None:
    """Leave the process group at exit: after a barrier when every process finished cleanly (so
    none exits while another still writes), at once after an error (torchrun stops the others)."""
    if not active():
        return
    dist = _dist()
    if clean:
        dist.barrier()
    dist.destroy_process_group()
