"""Training-data throughput: the prepared cache's loader against torchvision's ImageFolder.

Both read the same stand-in (at least 20k images, written by ``advrp2k data synth`` in the
release layout) at 224 px with the same number of workers, in shuffled batches, and deliver
uint8 ``(B, 3, 224, 224)`` batches (the training loop's input):

* peer: ``torchvision.datasets.ImageFolder`` over ``all/train`` with PIL decoding and
  ``Resize((224, 224))`` + ``PILToTensor`` in a ``DataLoader`` with W worker processes;
* ours: the uint8 shards of ``advrp2k data prepare``, gathered by ``advrp2k.data.loader``: W
  threads read each batch's rows into reused buffers, one batch ahead of the consumer.

A third participant, W threads reading the cache's files front to back, gives the machine's
bound for any loader of the cache. In each of ``--repeats`` rounds every participant runs two
shuffled epochs back to back, and the second is the timed one: on this project's VMs, memory
another program used last reads up to 2x slower (first-touch and TLB costs), so a loader's
first epoch after another measures the hand-over, not the loader; first epochs are printed too.
Images/s exclude each epoch's first batch (worker start-up, buffer allocation). Prints the
medians and the line ``cache / ImageFolder: N.Nx`` (ratio of the medians), then what the data
integrity checks cost: verifying the shard checksums when the training split is opened (once
per run), the cached scan (listing plus every file's content signature) and the strict JPEG
check of the scan against Pillow's decode of the same files.
Usage: python benchmarks/data_speed.py [--root DIR] [--images 20000] [--workers 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _standin(root: Path, images: int, workers: int) -> Path:
    from advrp2k.data.synth_scale import generate_scaled

    return generate_scaled(root, n_skus=2388, n_images=images, size=224, seed=0, workers=workers)


def ours(root: Path, bs: int, workers: int):
    """The prepared cache (prepared here first): a function running one shuffled epoch."""
    from advrp2k.data import load_split, scan_rp2k
    from advrp2k.data.loader import prefetched
    from advrp2k.data.prepared import prepare

    scan = scan_rp2k(root)
    prepare(scan, 224, workers)
    os.sync()  # the cache is prepared once, long before training: its write-back is not the loader's cost
    x, _ = load_split(scan, "train", 224)

    def epoch(seed: int, batches: int | None) -> float:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        plan = list(order.split(bs))[:batches]
        return steady_rate(xb for _, xb in prefetched(x, plan, torch.device("cpu"), as_float=False, workers=workers))
    return epoch, x


def read_ceiling(x, bs: int, workers: int):
    """The machine's bound for any loader of the cache: W threads reading the shard files front to
    back in batch-sized pieces into reused buffers (no shuffle, no gather), as images/s."""
    from concurrent.futures import ThreadPoolExecutor

    pieces = [torch.arange(k, min(k + bs, len(x))) for k in range(0, len(x), bs)]
    buffers = [torch.zeros((bs, *x.row_shape), dtype=torch.uint8) for _ in range(workers)]

    def read(w: int) -> int:
        for piece in pieces[w::workers]:
            x.gather_into(piece.numpy(), buffers[w])
        return sum(len(p) for p in pieces[w::workers])

    def epoch(seed: int, batches: int | None) -> float:
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            n = sum(pool.map(read, range(workers)))
        return n / (time.perf_counter() - start)
    return epoch


def imagefolder(root: Path, bs: int, workers: int):
    """torchvision's ImageFolder in a DataLoader: a function running one shuffled epoch."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Resize((224, 224)), transforms.PILToTensor()])
    ds = datasets.ImageFolder(str(root / "all" / "train"), transform=tf)

    def epoch(seed: int, batches: int | None) -> float:
        loader = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True, num_workers=workers,
                                             generator=torch.Generator().manual_seed(seed))
        return steady_rate(xb for _, (xb, _) in zip(range(batches or len(loader)), loader))
    return epoch


def steady_rate(batches) -> float:
    """Images/s from the first batch's arrival to the last's: start-up (worker processes for the
    peer, buffers and open files for ours) is left out on both sides, as in a long training run."""
    it = iter(batches)
    next(it)
    start, n = time.perf_counter(), 0
    for xb in it:
        n += len(xb)
    return n / (time.perf_counter() - start)


def verification_costs(root: Path, x, cache_rate: float, peer_rate: float) -> list[str]:
    """Lines saying what the integrity checks cost on this data (medians of 3 timings)."""
    import io

    from PIL import Image

    from advrp2k.data import scan_rp2k
    from advrp2k.data.decode import check_jpeg, read_regular_file
    from advrp2k.data.prepared import open_prepared

    scan = scan_rp2k(root)
    t_open = _median_time(lambda: open_prepared(scan, "train", 224))
    gb = len(x) * 3 * 224 * 224 / 1e9
    t_scan = _median_time(lambda: scan_rp2k(root))
    files = [Path(scan.root) / rel for rel, _ in scan.samples["train"][:500]]
    blobs = [read_regular_file(f) for f in files]
    t_strict = _median_time(lambda: [check_jpeg(b) for b in blobs]) / len(blobs)
    t_pil = _median_time(lambda: [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs]) / len(blobs)
    n = sum(len(v) for v in scan.samples.values())
    return [f"shard checksums verified at open: {t_open:.2f} s for {len(x)} images ({gb:.2f} GB, {gb / t_open:.1f} GB/s), "
            f"once per run: {t_open * cache_rate / len(x):.1f}x one cache-loader epoch, "
            f"{100 * t_open * peer_rate / len(x):.0f} % of one ImageFolder epoch",
            f"cached scan (listing + content signatures of {n} files): {t_scan:.2f} s",
            f"strict JPEG check at scan time: {1e3 * t_strict:.2f} ms per image, {100 * t_strict / t_pil:.0f} % of "
            f"Pillow's decode ({1e3 * t_pil:.2f} ms), once per image (the scan is cached)"]


def _median_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="an existing stand-in or RP2K copy (default: generate one)")
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batches", type=int, help="batches per epoch (default: the whole training split)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="rounds; in each, every loader runs two epochs and the second is timed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("ADVRP2K_HOME", str(Path(tmp) / "home"))
        root = args.root or _standin(Path(tmp) / "standin", args.images, args.workers)
        os.sync()
        cache_epoch, prepared = ours(root, args.batch_size, args.workers)
        loaders = {"ImageFolder + PIL decode + resize": imagefolder(root, args.batch_size, args.workers),
                   "bound: sequential reads of the cache": read_ceiling(prepared, args.batch_size, args.workers),
                   "prepared cache loader": cache_epoch}
        first, steady = ({name: [] for name in loaders} for _ in range(2))
        for seed in range(args.repeats):  # rounds, so that every loader sees the same machine conditions
            for name, epoch in loaders.items():
                first[name].append(epoch(2 * seed, args.batches))  # right after another loader ran
                steady[name].append(epoch(2 * seed + 1, args.batches))  # right after itself
        print(f"{args.batches or 'all'} batches of {args.batch_size} per epoch at 224 px, {args.workers} workers, "
              f"{args.repeats} rounds of 2 epochs per loader, stand-in at {root}")
        for name in loaders:
            print(f"{name}: {statistics.median(steady[name]):.0f} images/s (median of the second epochs: "
                  f"{', '.join(f'{v:.0f}' for v in steady[name])}; first epochs: "
                  f"{', '.join(f'{v:.0f}' for v in first[name])})")
        peer, bound, mine = (statistics.median(r) for r in steady.values())
        print(f"cache loader / sequential-read bound: {100 * mine / bound:.0f} %")
        print(f"cache / ImageFolder: {mine / peer:.1f}x")
        for line in verification_costs(root, prepared, mine, peer):
            print(line)

if __name__ == "__main__":
    main()
