"""The shared trainer: SGD with step decay, resumable at any batch boundary.

State (model, optimiser, scheduler, epoch, batch position, and every random generator) is
checkpointed atomically at the end of each epoch and whenever SIGINT/SIGTERM asks to stop.
Re-running the same job resumes from the newest readable checkpoint; a corrupt or truncated
one is named in the log and the previous good one is used. A deterministic CPU run that is
interrupted and resumed ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from advrp2k.core.io import atomic_write
from advrp2k.data.loader import prefetched
from advrp2k.plugins.defense import TrainingDefense
from advrp2k.core.errors import TrainingInterrupted
from advrp2k.core import distributed
from advrp2k.train.augment import augment_batch
from advrp2k.core.precision import autocast
from advrp2k.core.batches import to_device_float

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Optimisation settings shared by every training-time defense (the paper's Sec. 4.1)."""

    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay_every: int = 4  # divide lr by 10 every this many epochs (paper: 50 of 150)
    seed: int = 0
    precision: str = "fp32"  # "bf16": autocast for forward passes and attack steps (advrp2k.core.precision)
    augment: str = "none"  # "paper": the RP2K paper's augmentation (advrp2k.train.augment)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def stop_on_signals():
    """Turn SIGINT/SIGTERM into a flag checked at batch boundaries (main thread only)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda *_: flag.set())
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _optimizer(model: nn.Module, st: TrainSettings):
    opt = torch.optim.SGD(model.parameters(), lr=st.lr, momentum=st.momentum, weight_decay=st.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, st.lr_decay_every), gamma=0.1)
    return opt, sched


def _save_state(run_dir: Path, model, opt, sched, epoch: int, batch: int, gens: dict) -> Path | None:
    """Checkpoint (every process takes part; only the main process writes). Each process's own
    defense generator is kept, so a resume with the same number of processes continues exactly."""
    defense_states = distributed.all_gather(gens["defense"].get_state())
    path = run_dir / f"state-e{epoch:04d}-b{batch:06d}.pt"
    if distributed.is_main():
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "epoch": epoch, "batch": batch, "rng": {"shuffle": gens["shuffle"].get_state(),
                                                         "defense": defense_states[0],
                                                         "augment": gens["augment"].get_state()},
                 "rng_defense_ranks": defense_states}
        atomic_write(path, lambda f: torch.save(state, f))
        for old in sorted(run_dir.glob("state-*.pt"))[:-2]:  # keep the newest two
            old.unlink(missing_ok=True)
    distributed.barrier()  # nobody resumes from a checkpoint still being written
    return path


def _resume(state: dict, model, opt, sched, gens: dict) -> tuple[int, int]:
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    gens["shuffle"].set_state(state["rng"]["shuffle"])
    if "augment" in state["rng"]:
        gens["augment"].set_state(state["rng"]["augment"])
    ranks = state.get("rng_defense_ranks") or [state["rng"]["defense"]]
    if len(ranks) == distributed.world_size():
        gens["defense"].set_state(ranks[distributed.rank()])
    else:  # another number of processes than the checkpoint's: attack draws start a new stream
        log.warning("resuming with %d processes from a checkpoint written by %d: attack random draws differ "
                    "from an uninterrupted run", distributed.world_size(), len(ranks))
    log.info("resuming training at epoch %d, batch %d", state["epoch"], state["batch"])
    return state["epoch"], state["batch"]


class _UpdateView(nn.Module):
    """What a training-time defense sees: forwards in train mode go through DistributedDataParallel
    (so the weight update is all-reduced); in eval mode, as the attack base class sets it, they
    go to the bare module (attack steps are local: no all-reduce, BatchNorm in eval mode)."""

    def __init__(self, ddp: nn.Module, bare: nn.Module):
        super().__init__()
        self.ddp, self.bare = ddp, bare

    def forward(self, x):
        return self.ddp(x) if self.training else self.bare(x)


def _update_view(model: nn.Module, device: torch.device) -> nn.Module:
    if not distributed.active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ddp = DistributedDataParallel(model, device_ids=[device.index or 0] if device.type == "cuda" else None)
    return _UpdateView(ddp, model)


def _load_latest_state(run_dir: Path) -> dict | None:
    for path in sorted(run_dir.glob("state-*.pt"), reverse=True):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            log.warning("training checkpoint %s is corrupt or truncated (%s); using the previous one",
                        path.name, type(exc).__name__)
    return None


def train(model: nn.Module, defense: TrainingDefense, x: torch.Tensor, y: torch.Tensor,
          settings: TrainSettings, run_dir: str | Path, device: torch.device,
          progress: Callable | None = None) -> nn.Module:
    """Train ``model`` in place with ``defense``'s loss on uint8 images ``x`` and labels ``y``.

    Args:
        run_dir: folder for resumable state; the same folder resumes the same job.
        progress: optional tqdm-like factory for a per-epoch bar.

    Raises:
        TrainingInterrupted: after SIGINT/SIGTERM, with a checkpoint saved.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    net = _update_view(model, device)
    opt, sched = _optimizer(model, settings)
    # The shuffle is the same in every process (each takes its share of every global batch);
    # attack randomness is each process's own.
    gens = {"shuffle": torch.Generator().manual_seed(settings.seed),
            "defense": torch.Generator().manual_seed(settings.seed + 1 + 7919 * distributed.rank()),
            "augment": torch.Generator().manual_seed(settings.seed + 2 + 7919 * distributed.rank())}
    epoch, start_batch = 0, 0
    state = _load_latest_state(run_dir)
    if state is not None:
        epoch, start_batch = _resume(state, model, opt, sched, gens)
    with stop_on_signals() as stop:
        while epoch < settings.epochs:
            epoch_gen_state = gens["shuffle"].get_state()
            order = torch.randperm(len(x), generator=gens["shuffle"])
            batches = list(order.split(settings.batch_size))
            net.train()
            bar = progress(total=len(batches), initial=start_batch, desc=f"epoch {epoch + 1}/{settings.epochs}",
                           leave=False) if progress else None
            for b, loss in _epoch_steps(net, defense, x, y, batches, settings, device, opt, gens, start_batch):
                if loss is None:  # before batch b: nothing of it done yet, the one place to stop
                    if distributed.any_true(stop.is_set()):  # every process stops at the same batch
                        gens["shuffle"].set_state(epoch_gen_state)  # the permutation is redrawn on resume
                        _save_state(run_dir, model, opt, sched, epoch, b, gens)
                        raise TrainingInterrupted(f"stopped at epoch {epoch + 1}, batch {b}; re-run to resume")
                elif bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
            if bar is not None:
                bar.close()
            sched.step()
            epoch, start_batch = epoch + 1, 0
            _save_state(run_dir, model, opt, sched, epoch, 0, gens)
    model.eval()
    return model


def _epoch_steps(net, defense, x, y, batches, settings, device, opt, gens, start_batch):
    """One epoch's optimiser steps from ``start_batch`` on. Yields ``(b, None)`` before batch ``b``
    (the caller may stop there, with nothing of it done) and ``(b, loss)`` after its step."""
    # This process's share of every global batch; a last batch too small to give every
    # process an example is skipped by all.
    shares = [b[distributed.rank()::distributed.world_size()] if len(b) >= distributed.world_size()
              else b[:0] for b in batches]
    for b, xb in prefetched(x, shares, device, start_batch):
        yield b, None
        if not len(shares[b]):
            continue
        xb, yb = augment_batch(xb, settings.augment, gens["augment"]), y[shares[b]].to(device)
        with autocast(settings.precision, device):
            loss = defense.training_loss(net, xb, yb, gens["defense"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        yield b, loss


def seconds_per_batch(model: nn.Module, defense: TrainingDefense, x: torch.Tensor, y: torch.Tensor,
                      settings: TrainSettings, device: torch.device, steps: int = 2) -> float:
    """Wall seconds of one training step (the defense's loss, backward, SGD update) on a batch of
    ``x``, timed over ``steps`` steps after a warm-up one. ``model`` is changed: pass a throwaway
    copy. What ``reproduce`` multiplies into "about N minutes here" before it trains."""
    import time

    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    gen = torch.Generator().manual_seed(settings.seed)
    idx = torch.arange(min(settings.batch_size, len(y)))
    xb, yb = to_device_float(x[idx], device), y[idx].to(device)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = defense.training_loss(model, xb, yb, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps
