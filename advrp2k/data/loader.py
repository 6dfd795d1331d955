"""Training batches that overlap loading with compute.

The next batch is gathered while the current one trains. From a prepared cache (anything with
``gather_into``), several threads read its rows straight into one of a few reused buffers:
no per-batch allocation, no page faults, one copy from the page cache; on a GPU the buffers
are pinned and the batch is copied to the device on a side stream as soon as it is complete.
Other splits (a decoded tensor, lazily decoded JPEGs) are indexed in one background thread and
copied without blocking when taken. The batch
contract (uint8 or float in, float [0, 1] on the device out) is ``advrp2k.core.batches``'s.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch

from advrp2k.core.batches import to_device_float

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
            yield b, to_device_float(rows, device) if as_float else rows.to(device, non_blocking=rows.is_pinned())


def _submit(pool, x, index_batches, b: int, ring, workers: int, device: torch.device):
    """Start gathering batch b (and, on CUDA from a prepared cache, copying it to the device);
    returns a function that waits for it and gives its rows."""
    idx = index_batches[b]
    if ring is None and device.type == "cpu" and isinstance(x, torch.Tensor):
        # Rows of a tensor in memory for the CPU: nothing to overlap, and a gather in a loader
        # thread starts a second OpenMP team that competes with the training's own threads
        # for the cores (measured: 1.8x slower Madry training steps on 2 cores).
        rows = x[idx]
        return lambda: rows
    if ring is None:
        pin = device.type == "cuda"
        return pool.submit(lambda: x[idx].pin_memory() if pin else x[idx]).result
    buf = ring.take(b)[:len(idx)]
    parts = [p for p in np.array_split(np.arange(len(idx)), workers) if len(p)]
    ids = np.asarray(idx.tolist(), dtype=np.int64)
    futures = [pool.submit(x.gather_into, ids[p], buf[p[0]:p[-1] + 1]) for p in parts]
    if ring.stream is not None:  # queued after the parts, so it never waits on a part not yet running
        moved = pool.submit(ring.to_device, b, buf, futures, device)
        return lambda: ring.arrived(b, moved.result())

    def wait():
        for f in futures:
            f.result()
        return buf
    return wait


class _Ring:
    """RING reused uint8 buffers of the largest batch. For a CUDA device they are pinned, each
    gathered batch is copied to the device on a side stream as soon as it is complete (while
    the previous batch computes), and a buffer is refilled only after its copy has finished."""

    def __init__(self, x, index_batches, device: torch.device):
        cuda = device.type == "cuda"
        shape = (max(len(i) for i in index_batches), *x.row_shape)
        self.buffers = [torch.zeros(shape, dtype=torch.uint8, pin_memory=cuda) for _ in range(RING)]
        self.events = [None] * RING
        self.stream = torch.cuda.Stream(device) if cuda else None

    def take(self, b: int) -> torch.Tensor:
        event = self.events[b % RING]
        if event is not None:
            event.synchronize()  # the copy to the device made from this buffer has finished
        return self.buffers[b % RING]

    def to_device(self, b: int, buf: torch.Tensor, parts, device: torch.device) -> torch.Tensor:
        """(a loader thread) Once batch b is gathered, start its copy to the device."""
        for part in parts:
            part.result()
        with torch.cuda.stream(self.stream):
            moved = buf.to(device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        self.events[b % RING] = event
        return moved

    def arrived(self, b: int, moved: torch.Tensor) -> torch.Tensor:
        """(the training thread) Order batch b's use after its copy; its memory now belongs to
        the compute stream."""
        current = torch.cuda.current_stream(moved.device)
        current.wait_event(self.events[b % RING])
        moved.record_stream(current)
        return moved
