"""Training batches that overlap loading with compute.

The next batch is gathered while the current one trains. From a prepared cache (anything with
``gather_into``), several threads read its rows straight into one of a few reused buffers
(pinned on a GPU machine): no per-batch allocation, no page faults, one copy from the page
cache; a buffer is refilled only after the device copy made from it has finished. Other splits
(a decoded tensor, lazily decoded JPEGs) are indexed in one background thread. The batch
contract (uint8 or float in, float [0, 1] on the device out) is ``advrp2k.data.batches``'s.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

from .batches import to_device_float

RING = 3  # buffers: the batch in use, the one being filled, and one whose device copy may still run


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def prefetched(x, index_batches: list[torch.Tensor], device: torch.device, start: int = 0,
               as_float: bool = True, workers: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """``(b, batch b of x on device as float [0, 1])`` for b from ``start``, the next batch
    gathered ahead by ``workers`` threads. ``as_float=False`` yields the uint8 rows on the device,
    as the loader benchmark compares them; on the CPU these are reused buffers: a batch stays
    intact while the next one is taken and used, and is overwritten after that (clone to keep)."""
    if start >= len(index_batches):
        return
    workers = workers or default_workers()
    ring = _Ring(x, index_batches, device) if hasattr(x, "gather_into") else None
    with ThreadPoolExecutor(workers) as pool:
        pending = _submit(pool, x, index_batches, start, ring, workers, device)
        for b in range(start, len(index_batches)):
            rows = pending()
            if b + 1 < len(index_batches):
                pending = _submit(pool, x, index_batches, b + 1, ring, workers, device)
            out = to_device_float(rows, device) if as_float else rows.to(device, non_blocking=rows.is_pinned())
            if ring is not None:
                ring.copied(b)
            yield b, out


def _submit(pool, x, index_batches, b: int, ring, workers: int, device: torch.device):
    """Start gathering batch b; returns a function that waits for it and gives its rows."""
    idx = index_batches[b]
    if ring is None:
        pin = device.type == "cuda"
        return pool.submit(lambda: x[idx].pin_memory() if pin else x[idx]).result
    buf = ring.take(b)[:len(idx)]
    parts = [p for p in np.array_split(np.arange(len(idx)), workers) if len(p)]
    ids = np.asarray(idx.tolist(), dtype=np.int64)
    futures = [pool.submit(x.gather_into, ids[p], buf[p[0]:p[-1] + 1]) for p in parts]

    def wait():
        for f in futures:
            f.result()
        return buf
    return wait


class _Ring:
    """RING reused uint8 buffers of the largest batch, pinned for a CUDA device, each with the
    event of the last device copy made from it."""

    def __init__(self, x, index_batches, device: torch.device):
        self.cuda = device.type == "cuda"
        shape = (max(len(i) for i in index_batches), *x.row_shape)
        self.buffers = [torch.zeros(shape, dtype=torch.uint8, pin_memory=self.cuda) for _ in range(RING)]
        self.events = [None] * RING

    def take(self, b: int) -> torch.Tensor:
        event = self.events[b % RING]
        if event is not None:
            event.synchronize()  # the copy to the device made from this buffer has finished
        return self.buffers[b % RING]

    def copied(self, b: int) -> None:
        if self.cuda:
            self.events[b % RING] = torch.cuda.Event()
            self.events[b % RING].record()
