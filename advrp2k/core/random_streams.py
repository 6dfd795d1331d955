"""Random numbers as a contract: an attack's draws for an example come from a stream keyed by
(attack seed, example index, restart), never from "the next numbers of a generator".

So an example's result does not depend on the batch size, the order in which freed slots are
refilled, the point a run was resumed from, or how many processes shared the work. Draws are
made on the CPU (and moved), so they match across devices too.
"""
from __future__ import annotations

import torch

_MASK = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    """One round of SplitMix64: a well-mixed 64-bit integer from any 64-bit input."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def stream_seed(seed: int, index: int, restart: int = 0) -> int:
    """The seed of the stream of (attack seed, example index, restart), in [0, 2**63)."""
    return _splitmix64(_splitmix64(_splitmix64(seed & _MASK) ^ index) ^ restart) >> 1


def uniform(shape: tuple[int, ...], seed: int, index: list[int], restart: list[int],
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(len(index), *shape)`` uniform [0, 1) draws, row k from the stream (seed, index[k], restart[k])."""
    out = torch.empty((len(index), *shape), dtype=dtype)
    gen = torch.Generator()
    for k, (i, r) in enumerate(zip(index, restart)):
        gen.manual_seed(stream_seed(seed, int(i), int(r)))
        out[k] = torch.rand(shape, generator=gen, dtype=dtype)
    return out


#: The name plugins import from the public API (``advrp2k.uniform_streams``).
uniform_streams = uniform
