"""The arithmetic floor of a run: its convolution and matrix-multiply FLOPs, counted as they run,
and the time those very kernels take on their own.

``ArithmeticCounter`` is a dispatch mode. Entered around a run, it records every convolution
(forward, and backward with the gradients that backward computed) and matrix multiply under the
phase the caller names (``counter.phase``), by signature: the op, its tensors' shapes and its
other arguments. ``floor_seconds`` then replays the signatures that carry most of a phase's FLOPs
in isolation, on random tensors of the same shapes at the current thread count, and returns how
long the phase's arithmetic alone takes when nothing else (pooling, normalisation, activations,
Python, data) costs anything. No rearrangement of the code around these kernels gets under it;
only other kernels (another algorithm or memory layout, lower precision) could, and they change
the results' last bits.

The FLOP formulas are torch's own (``torch.utils.flop_counter``): 2 per multiply-accumulate.
"""
from __future__ import annotations

import time
from collections import defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

#: fraction of a phase's FLOPs whose signatures are replayed; the rest is timed at their mean rate
COVERED = 0.98
MAX_REPLAYS = 80


def _key(value):
    """A hashable description of one argument: a tensor by (shape, dtype), anything else as is."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    return value


class ArithmeticCounter(TorchDispatchMode):
    """Counts the FLOPs of the ops torch has formulas for, per ``phase`` and signature."""

    def __init__(self):
        super().__init__()
        self.phase: str | None = None
        #: phase -> signature -> [calls, flops]; a signature is (op, argument keys)
        self.records: dict[str, dict] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        self.ops: dict = {}  # signature -> the op, to replay it

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None and self.phase is not None:
            signature = (str(func), _key(args), _key(sorted(kwargs.items())))
            record = self.records[self.phase][signature]
            record[0] += 1
            record[1] += formula(*args, **kwargs, out_val=out)
            self.ops[signature] = func
        return out


def _materialise(key):
    """Random arguments matching ``key`` (tensors contiguous)."""
    if isinstance(key, tuple) and key and key[0] == "tensor":
        _, shape, dtype = key
        return torch.randn(shape, dtype=dtype) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype)
    if isinstance(key, tuple):
        return [_materialise(k) for k in key]
    return key


def _isolated_seconds(func, signature, reps: int = 5) -> float:
    """Best of ``reps`` timed calls of the op on fresh random arguments of the recorded shapes."""
    _, arg_keys, kwarg_keys = signature
    args = _materialise(arg_keys)
    kwargs = {name: _materialise(k) for name, k in kwarg_keys}
    func(*args, **kwargs)  # warm-up: the kernel library picks and caches its algorithm
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        func(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best


def floor_seconds(counter: ArithmeticCounter, phase: str) -> dict:
    """The phase's FLOPs and the time its kernels take alone.

    Returns:
        ``{"flops", "seconds", "replayed_share"}``: total FLOPs; seconds for all calls of the
        replayed signatures, timed alone, plus the rest at their mean rate; the share of FLOPs
        whose signature was replayed.
    """
    records = counter.records.get(phase, {})
    total = sum(flops for _, flops in records.values())
    if not total:
        return {"flops": 0, "seconds": 0.0, "replayed_share": 1.0}
    seconds = replayed = 0.0
    for n, (signature, (calls, flops)) in enumerate(sorted(records.items(), key=lambda kv: -kv[1][1])):
        if replayed >= COVERED * total or n >= MAX_REPLAYS:
            break
        seconds += calls * _isolated_seconds(counter.ops[signature], signature)
        replayed += flops
    seconds *= total / replayed  # the rest at the replayed kernels' mean rate
    return {"flops": total, "seconds": seconds, "replayed_share": replayed / total}
