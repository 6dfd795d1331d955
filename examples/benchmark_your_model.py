"""Benchmark a model of your own with advrp2k's Python API, in under a minute on a CPU.

    python3 examples/benchmark_your_model.py [--data PATH] [--epochs N] [--leaderboard DIR]

It defines a small CNN (your code, nothing registered with advrp2k), trains it briefly with a
plain PyTorch loop on the data's training split, then calls ``advrp2k.benchmark``, which runs
the same attacks, checks, escalation and intervals as ``advrp2k eval``. Without ``--data`` the
data is the embedded stand-in, so the numbers are synthetic, not RP2K results.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import advrp2k


class TinyNet(nn.Module):
    """Your model: takes [0, 1] images and normalises inside itself (as the benchmark requires)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.head(self.features((x - 0.5) / 0.25))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    """Plain training on clean images (uint8 in, [0, 1] floats to the model)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(64):
            loss = nn.functional.cross_entropy(model(x[idx].float() / 255), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="your RP2K copy (default: the embedded synthetic stand-in)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--leaderboard", help="also write a leaderboard entry into this folder")
    args = parser.parse_args()
    torch.manual_seed(0)
    start = time.perf_counter()
    classes = advrp2k.dataset_classes(args.data)
    x, y = advrp2k.load_images("train", args.data)
    model = TinyNet(len(classes))
    train(model, x, y, args.epochs)
    result = advrp2k.benchmark(model, classes=classes, data=args.data, name="TinyNet", leaderboard=args.leaderboard)
    print(result)
    print(f"\nclean {result.clean_acc:.2%}, robust {', '.join(f'{e}: {a:.2%}' for e, a in result.robust_acc.items())}; "
          f"{len(result.examples)} test images, {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
