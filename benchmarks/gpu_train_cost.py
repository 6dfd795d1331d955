"""Training throughput of the paper protocol (ResNet-34 at 224 px, batch 128) on this device,
for standard and Madry (PGD-7) training, and the implied cost of `reproduce table5 --protocol paper`.

It times real training steps of advrp2k's own trainer loss functions on random images (the
cost does not depend on pixel values); JPEG decoding is not included.
"""
from __future__ import annotations

import argparse

import torch

from advrp2k.jobs.protocols import get_protocol
from gpu_suite import train_ips  # the same timed training steps (this folder is on sys.path)

TRAIN_IMAGES = 345_000  # about 0.9 of RP2K's 384,311 images


def images_per_second(defense_name, eps, device, batch, steps, warmup=3):
    """fp32 training images/s at 224 px with 2,388 classes (``gpu_suite.train_ips``'s measure)."""
    assert eps in (None, "8/255"), "the suite times Madry at 8/255"
    return train_ips(defense_name, device, "fp32", False, batch, 224, 2388, steps, warmup)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    device = torch.device(args.device)
    p = get_protocol("paper")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}; paper protocol: {p.arch}, {p.image_size}px, batch {p.batch_size}, {p.epochs} epochs")
    total = 0.0
    for label, defense, eps, n_models in (("standard", "standard", None, 1), ("madry PGD-7", "madry", "8/255", 2)):
        ips = images_per_second(defense, eps, device, p.batch_size, args.steps)
        hours = TRAIN_IMAGES * p.epochs / ips / 3600
        total += hours * n_models
        print(f"{label}: {ips:.0f} train images/s -> {hours:.1f} h per model x {n_models}")
    print(f"Table 5 training total: about {total:.0f} GPU hours ({total / 24:.1f} days) on this device")


if __name__ == "__main__":
    main()
