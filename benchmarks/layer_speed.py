"""smallcnn's own layers against ATen's, on the quick start's two kinds of step.

smallcnn computes its pools with ``advrp2k.models.fast_pool.MaxPool2x2`` and its BatchNorms with
``advrp2k.models.fast_batchnorm.BatchNorm2d``, each ATen's results bit for bit. This times, in one
run and interleaved, the same network (same weights) three ways: with ATen's layers
(``nn.MaxPool2d``, ``nn.BatchNorm2d``), with the fast pool only, and with both, on

- an attack step: forward and input gradient of a batch of 128 in eval mode, weights frozen
  (evaluation's PGD and its escalation);
- a Madry training step: PGD-3 at 8/255 in eval mode, then forward, backward and SGD in train
  mode on a batch of 32 (the quick protocol's training).

It checks that every variant's input gradients and trained weights equal ATen's bit for bit, and
prints the median time of each and its ratio to ATen's layers.

    python3 benchmarks/layer_speed.py [--repeats 5] [--steps 10]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from advrp2k.models.architectures import smallcnn, with_aten_layers
from advrp2k.plugins.attack import create_attack, frozen_eval


def variants(classes: int = 59) -> dict[str, nn.Module]:
    """The same smallcnn (same weights) with ATen's layers, the fast pool only, and both fast layers."""
    torch.manual_seed(0)
    fast = smallcnn(classes)
    return {"ATen's layers": with_aten_layers(copy.deepcopy(fast)),
            "fast pool": with_aten_layers(copy.deepcopy(fast), pools=False),
            "fast pool and BatchNorm": fast}


def attack_step(model, x, y) -> torch.Tensor:
    with frozen_eval(model):
        xa = x.clone().requires_grad_(True)
        return torch.autograd.grad(F.cross_entropy(model(xa), y, reduction="none").sum(), xa)[0]


def training_steps(model, x, y, steps: int):
    """``steps`` Madry steps (PGD-3 at 8/255, then SGD) on a copy of ``model``; returns it."""
    model = copy.deepcopy(model).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    attack, gen = create_attack("pgd", "8/255", steps=3, early_stop=False), torch.Generator().manual_seed(0)
    for _ in range(steps):
        x_adv = attack(model, x, y, generator=gen).x_adv
        loss = F.cross_entropy(model(x_adv), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds; the median is printed")
    parser.add_argument("--steps", type=int, default=10, help="steps timed per round")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(1)
    x128, y128 = torch.rand(128, 3, 32, 32, generator=g), torch.randint(0, 59, (128,), generator=g)
    x32, y32 = x128[:32], y128[:32]
    nets = variants()
    ref_grad = attack_step(nets["ATen's layers"], x128, y128)
    ref_state = training_steps(nets["ATen's layers"], x32, y32, 2).state_dict()
    for name, net in nets.items():  # same results first: a faster wrong layer is no speed-up
        same_grad = torch.equal(attack_step(net, x128, y128), ref_grad)
        state = training_steps(net, x32, y32, 2).state_dict()
        same_weights = all(torch.equal(state[k], ref_state[k]) for k in ref_state)
        print(f"{name:<26} input gradient {'==' if same_grad else '!='} ATen's, weights after 2 Madry steps "
              f"{'==' if same_weights else '!='} ATen's")
    times = {name: {"attack": [], "train": []} for name in nets}
    for _ in range(args.repeats):
        for name, net in nets.items():
            attack_step(net, x128, y128)  # warm-up
            times[name]["attack"].append(_timed(lambda: [attack_step(net, x128, y128) for _ in range(args.steps)]))
            times[name]["train"].append(_timed(lambda: training_steps(net, x32, y32, args.steps)))
    print(f"\nmedian ms per step over {args.repeats} rounds of {args.steps}, torch threads {torch.get_num_threads()}")
    base = {kind: statistics.median(times["ATen's layers"][kind]) for kind in ("attack", "train")}
    for name in nets:
        cells = []
        for kind, label in (("attack", "attack step (128, eval)"), ("train", "Madry step (32)")):
            t = statistics.median(times[name][kind])
            cells.append(f"{label} {1e3 * t / args.steps:7.1f} ms ({base[kind] / t:.2f}x)")
        print(f"  {name:<26} " + "   ".join(cells))


if __name__ == "__main__":
    main()
