"""Precision as a contract, shared by the trainer and the evaluator.

Attack and training steps may run in bf16 (autocast, channels_last) for speed on a GPU; every
verdict that enters a number (clean correctness, fooled or not) is taken in fp32, and losses
that feed gradients are computed in fp32 from logits cast up and summed, not averaged, so
gradients of confidently classified points do not underflow. An attack plugin never has to know.
"""
from __future__ import annotations

import contextlib
import logging

import torch

from advrp2k.core.errors import UsageError

log = logging.getLogger(__name__)
_warned_cpu_bf16 = False

PRECISIONS = ("fp32", "bf16")
#: Share of attacked examples whose bf16 verdict fp32 may overturn before the entry is flagged.
OVERTURN_FLAG = 0.01


def resolve_precision(name: str | None, device: torch.device) -> str:
    """``None``/"auto": bf16 on CUDA, fp32 elsewhere (on a CPU bf16 is slower, not faster)."""
    if name in (None, "auto"):
        return "bf16" if device.type == "cuda" else "fp32"
    if name not in PRECISIONS:
        raise UsageError(f"unknown precision {name!r}: use one of {', '.join(PRECISIONS)} (or auto)")
    if name == "bf16" and device.type != "cuda":
        _warn_cpu_bf16()
    return name


def _warn_cpu_bf16() -> None:
    global _warned_cpu_bf16
    if not _warned_cpu_bf16:  # once per process: the choice is resolved in several places
        _warned_cpu_bf16 = True
        log.warning("--precision bf16 on a CPU runs many times slower than fp32 (measured here: 23x) and buys "
                    "nothing; leave --precision at auto (fp32 on a CPU)")


@contextlib.contextmanager
def fp32_verdicts():
    """Verdicts in true fp32: TF32 matmuls and convolutions (cuDNN's default on Ampere and newer)
    switched off inside, restored after. On a CPU it changes nothing."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def autocast(precision: str, device: torch.device):
    """The context attack and training steps run in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def place_model(model: torch.nn.Module, precision: str, device: torch.device, compile: bool = False):
    """channels_last for bf16 convolutions on CUDA; ``torch.compile`` when asked (weights stay fp32)."""
    if precision == "bf16" and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model)
    return model
