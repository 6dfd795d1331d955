"""Training batches that overlap loading with compute.

The next batch is gathered (from memory-mapped prepared shards, a decoded tensor or lazily
decoded JPEGs) in a background thread while the current one trains, in pinned memory on a
GPU machine, and copied to the device without blocking. The batch contract (uint8 or float in,
float [0, 1] on the device out) is ``advrp2k.data.batches``'s.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import torch

from .batches import to_device_float


def prefetched(x, index_batches: list[torch.Tensor], device: torch.device, start: int = 0,
               as_float: bool = True) -> Iterator[tuple[int, torch.Tensor]]:
    """``(b, batch b of x on device as float [0, 1])`` for b from ``start``, one batch fetched ahead
    (``as_float=False``: the uint8 rows on the device, as the loader benchmark compares them)."""
    pin = device.type == "cuda"

    def fetch(b: int):
        rows = x[index_batches[b]]
        return rows.pin_memory() if pin else rows

    if start >= len(index_batches):
        return
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(fetch, start)
        for b in range(start, len(index_batches)):
            rows = pending.result()
            if b + 1 < len(index_batches):
                pending = pool.submit(fetch, b + 1)
            yield b, to_device_float(rows, device) if as_float else rows.to(device, non_blocking=pin)
