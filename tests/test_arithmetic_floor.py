"""The benchmark's FLOP counter: it counts what ran (forward, and only the gradients a backward
computed), per phase, and its floor replays the recorded kernels."""
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from arithmetic_floor import ArithmeticCounter, floor_seconds  # noqa: E402

# one 3x3 convolution, 4 -> 8 channels, on 2 images of 6 x 6 (padding keeps 6 x 6)
MACS = 2 * 8 * 6 * 6 * 4 * 9


def _conv_and_input():
    torch.manual_seed(0)
    return nn.Conv2d(4, 8, 3, padding=1, bias=False), torch.rand(2, 4, 6, 6, requires_grad=True)


def test_forward_and_input_gradient_counted_weight_gradient_not():
    conv, x = _conv_and_input()
    with ArithmeticCounter() as counter:
        counter.phase = "attack"
        torch.autograd.grad(conv(x).sum(), x)  # the weight's gradient is not asked for
    flops = sum(f for _, f in counter.records["attack"].values())
    assert flops == 2 * MACS * 2  # forward + input gradient, 2 FLOPs per multiply-accumulate


def test_full_backward_counts_the_weight_gradient_too_and_phases_stay_apart():
    conv, x = _conv_and_input()
    with ArithmeticCounter() as counter:
        counter.phase = "train"
        conv(x).sum().backward()
        counter.phase = None
        conv(x)  # outside any phase: not recorded
    assert set(counter.records) == {"train"}
    assert sum(f for _, f in counter.records["train"].values()) == 3 * MACS * 2


def test_floor_replays_what_ran():
    conv, x = _conv_and_input()
    with ArithmeticCounter() as counter:
        counter.phase = "p"
        for _ in range(3):
            conv(x)
    (calls, flops), = counter.records["p"].values()
    assert (calls, flops) == (3, 3 * MACS * 2)
    floor = floor_seconds(counter, "p")
    assert floor["flops"] == 3 * MACS * 2 and floor["replayed_share"] == 1.0 and floor["seconds"] > 0
    assert floor_seconds(counter, "absent") == {"flops": 0, "seconds": 0.0, "replayed_share": 1.0}
