"""The full-scale GPU suite, one prepared run (called by gpu_suite.sh; about 8 minutes on one GPU).

On a stand-in generated on the device (2,388 SKUs, written by ``advrp2k data synth``), prints:

* training images/s of standard and Madry PGD-7 training, ResNet-34 at 224 px, batch 128, in
  fp32 and in bf16 (and bf16 + torch.compile), side by side, with the implied GPU hours of
  Table 5 (two Madry models and one standard model, 150 epochs of 345k images);
* the loader's images/s (prepared cache) against the training consumption in the same run;
* PGD-20 evaluation images/s at 8/255 on the test split, extrapolated to RP2K's 39k test
  images and labelled so;
* AutoAttack (standard) images/s on up to 500 test images;
* how many bf16 verdicts the fp32 check overturned in that evaluation.

``--smoke`` runs the same code at toy sizes on a CPU, to check the script before a GPU session.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from advrp2k import create_defense, create_model, parse_eps
from advrp2k.core.precision import autocast, place_model

TRAIN_IMAGES, TEST_IMAGES, EPOCHS = 345_000, 39_000, 150


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_ips(defense_name, device, precision, compile_model, batch, size, classes, steps, warmup=3) -> float:
    torch.manual_seed(0)
    model = create_model("resnet34", classes).to(device).train()
    model = place_model(model, precision, device, compile_model)
    defense = create_defense(defense_name, eps=parse_eps("8/255") if defense_name == "madry" else None,
                             **({"steps": 7} if defense_name == "madry" else {}))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        with autocast(precision, device):
            loss = defense.training_loss(model, x, y, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return batch * steps / (time.perf_counter() - t0)


def loader_ips(root: Path, size: int, batch: int, batches: int) -> tuple[float, bool]:
    """Images/s of the training loader (to the device, as float) and whether the batches it
    delivered (copied on a side stream on CUDA) equal the rows read directly, checked on 5."""
    from advrp2k.data import load_split, scan_rp2k
    from advrp2k.data.loader import prefetched
    from advrp2k.data.prepared import prepare

    scan = scan_rp2k(root)
    prepare(scan, size)
    x, _ = load_split(scan, "train", size)
    order = list(torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).split(batch)[:batches])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    n, same = 0, True
    for b, xb in prefetched(x, order, device):
        n += len(xb)
        if b % max(1, len(order) // 5) == 0:
            same &= torch.equal(xb, x[order[b]].to(device).float() / 255)
    sync(device)
    return n / (time.perf_counter() - t0), same


def eval_numbers(root: Path, size: int, device, n_pgd: int, n_aa: int, classes: int) -> dict:
    from advrp2k.data import load_split, scan_rp2k
    from advrp2k.eval.evaluator import AttackSpec, evaluate

    from advrp2k.core.batches import batch_images

    scan = scan_rp2k(root)
    x, _ = load_split(scan, "test", size)
    model = create_model("resnet34", len(scan.classes)).to(device).eval()  # cost does not depend on weights
    # Labels are the model's own predictions: every example is clean-correct and attacked (the worst
    # case for time; an untrained model would otherwise be wrong everywhere and attack nothing).
    with torch.no_grad():
        y = torch.cat([model(batch_images(x, idx, device)).argmax(1).cpu()
                       for idx in torch.arange(min(len(x), max(n_pgd, n_aa))).split(256)])
    eps = [parse_eps("8/255")]
    n = min(n_pgd, len(y))
    t0 = time.perf_counter()
    res = evaluate(model, x[:n], y[:n], [AttackSpec("pgd", {"steps": 20})], eps, device, 512, sanity_checks=False,
                   precision="bf16" if device.type == "cuda" else "fp32")
    t_pgd = time.perf_counter() - t0
    m = min(n_aa, len(y))
    t0 = time.perf_counter()
    evaluate(model, x[:m], y[:m], [AttackSpec("autoattack")], eps, device, 512, sanity_checks=False)
    t_aa = time.perf_counter() - t0
    return {"pgd_ips": n / t_pgd, "pgd_n": n, "aa_ips": m / t_aa, "aa_n": m, "overturned": res.precision["overturned"],
            "attacked": res.precision["attacked"], "clean": res.clean_acc()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="the stand-in written by advrp2k data synth")
    ap.add_argument("--smoke", action="store_true", help="toy sizes on any device (checks the script)")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size, batch, steps = (32, 8, 2) if args.smoke else (224, 128, 10)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {name}; ResNet-34 at {size} px, batch {batch}; stand-in {args.root}")
    rows, table5 = [], {}
    for precision, compile_model in (("fp32", False), ("bf16", False), ("bf16", True)):
        if compile_model and (args.smoke or device.type != "cuda"):
            continue
        for label, defense, n_models in (("standard", "standard", 1), ("madry PGD-7", "madry", 2)):
            ips = train_ips(defense, device, precision, compile_model, batch, size, 2388, steps)
            hours = TRAIN_IMAGES * EPOCHS / ips / 3600
            key = precision + (" + compile" if compile_model else "")
            table5[key] = table5.get(key, 0) + hours * n_models
            rows.append((key, label, ips, hours))
    print("| precision | training | images/s | hours per model (150 epochs, 345k images) |")
    print("| --- | --- | ---: | ---: |")
    for key, label, ips, hours in rows:
        print(f"| {key} | {label} | {ips:.0f} | {hours:.1f} |")
    for key, hours in table5.items():
        print(f"Table 5 training ({key}): about {hours:.1f} GPU hours")
    consumption = max(ips for key, label, ips, _ in rows if label == "standard")
    loader, same = loader_ips(args.root, size, batch, 20 if args.smoke else 200)
    print(f"loader (prepared cache, {os.cpu_count()} CPUs): {loader:.0f} images/s; fastest training consumption "
          f"{consumption:.0f} images/s; loader / consumption: {loader / consumption:.1f}x; "
          f"sampled batches identical to the cache's rows: {'yes' if same else 'NO'}")
    ev = eval_numbers(args.root, size, device, 64 if args.smoke else 4096, 16 if args.smoke else 500, 2388)
    print(f"PGD-20 @ 8/255 (every example attacked): {ev['pgd_ips']:.0f} images/s on {ev['pgd_n']} test images -> "
          f"a 39k-image test split in about {TEST_IMAGES / ev['pgd_ips']:.0f} s (extrapolated)")
    print(f"AutoAttack standard @ 8/255: {ev['aa_ips']:.1f} images/s on {ev['aa_n']} images")
    print(f"fp32 overturned {ev['overturned']} of {ev['attacked']} bf16 claims in the PGD-20 run")
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus < 2:
        print("multi-GPU scaling: needs a machine with several GPUs (this one has "
              f"{gpus}); run benchmarks/gpu_suite.sh there for the 1 vs all GPUs figure")


if __name__ == "__main__":
    main()
