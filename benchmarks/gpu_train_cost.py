"""Training throughput of the paper protocol (ResNet-34 at 224 px, batch 128) on this device,
for standard and Madry (PGD-7) training, and the implied cost of `reproduce table5 --protocol paper`.

It times real training steps of advrp2k's own trainer loss functions on random images (the
cost does not depend on pixel values); JPEG decoding is not included.
"""
from __future__ import annotations

import argparse
import time

import torch

from advrp2k import create_defense, create_model, parse_eps
from advrp2k.protocols import get_protocol

TRAIN_IMAGES = 345_000  # about 0.9 of RP2K's 384,311 images


def images_per_second(defense_name, eps, device, batch, steps, warmup=3):
    torch.manual_seed(0)
    model = create_model("resnet34", 2388).to(device).train()
    defense = create_defense(defense_name, eps=parse_eps(eps) if eps else None,
                             **({"steps": 7} if defense_name == "madry" else {}))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 2388, (batch,), device=device)
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize() if device.type == "cuda" else None
            t0 = time.perf_counter()
        loss = defense.training_loss(model, x, y, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize() if device.type == "cuda" else None
    return batch * steps / (time.perf_counter() - t0)


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
