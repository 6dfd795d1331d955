"""Training-data throughput: the prepared cache's loader against torchvision's ImageFolder.

Both read the same stand-in (at least 20k images, written by ``advrp2k data synth`` in the
release layout) at 224 px with the same number of workers, in shuffled batches, and deliver
uint8 ``(B, 3, 224, 224)`` batches (the training loop's input):

* peer: ``torchvision.datasets.ImageFolder`` over ``all/train`` with PIL decoding and
  ``Resize((224, 224))`` + ``PILToTensor`` in a ``DataLoader`` with W worker processes;
* ours: the memory-mapped shards of ``advrp2k data prepare``, gathered by ``advrp2k.data.loader``
  (one batch fetched ahead in a background thread; W only matters to the peer).

Prints images/s for both, measured in the same run, and the line ``cache / ImageFolder: N.Nx``.
Usage: python benchmarks/data_speed.py [--root DIR] [--images 20000] [--workers 2] [--batches 40]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def _standin(root: Path, images: int, workers: int) -> Path:
    from advrp2k.data.synth_scale import generate_scaled

    return generate_scaled(root, n_skus=2388, n_images=images, size=224, seed=0, workers=workers)


def ours(root: Path, batches: int, bs: int, workers: int) -> float:
    from advrp2k.data import load_split, scan_rp2k
    from advrp2k.data.loader import prefetched
    from advrp2k.data.prepared import prepare

    scan = scan_rp2k(root)
    prepare(scan, 224, workers)
    x, _ = load_split(scan, "train", 224)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    plan = list(order.split(bs))[:batches]
    start = time.perf_counter()
    n = sum(len(xb) for _, xb in prefetched(x, plan, torch.device("cpu"), as_float=False))
    return n / (time.perf_counter() - start)


def imagefolder(root: Path, batches: int, bs: int, workers: int) -> float:
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((224, 224)), transforms.PILToTensor()])
    ds = datasets.ImageFolder(str(root / "all" / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    n = 0
    for b, (xb, _) in enumerate(loader):
        n += len(xb)
        if b + 1 == batches:
            break
    return n / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="an existing stand-in or RP2K copy (default: generate one)")
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("ADVRP2K_HOME", str(Path(tmp) / "home"))
        root = args.root or _standin(Path(tmp) / "standin", args.images, args.workers)
        peer = imagefolder(root, args.batches, args.batch_size, args.workers)
        mine = ours(root, args.batches, args.batch_size, args.workers)
        print(f"{args.batches} batches of {args.batch_size} at 224 px, {args.workers} workers, stand-in at {root}")
        print(f"ImageFolder + PIL decode + resize: {peer:.0f} images/s")
        print(f"prepared cache loader: {mine:.0f} images/s")
        print(f"cache / ImageFolder: {mine / peer:.1f}x")


if __name__ == "__main__":
    main()
