"""``advrp2k data synth``: the embedded generator at any scale up to RP2K's own.

RP2K has 2,388 SKUs and 384,311 images, very long-tailed (a median near 47 images per SKU,
some SKUs with a single image, a catch-all class of about 10k), with about 71 SKUs only in
train and 8 only in test, and shelf crops of 80 to 400 px. This writes a stand-in with that
structure, in the release layout the loader reads (``all/train``, ``all/test``, ``meta.csv``,
``attributes.csv``), rendering SKUs in parallel processes. Results on it are synthetic.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from advrp2k.data.source import write_marker
from advrp2k.data.synth import (_FLAVOURS_CN, _SIZES, _TYPE_CN, _BRANDS_CN, Sku, SynthConfig, _Line, _render_product,
                                _shelf_photo, _write_tables, write_dataset)

RP2K_SKUS, RP2K_IMAGES = 2388, 384_311
TAIL_SIGMA = 1.5  # lognormal spread: with it a median of 47 gives RP2K's mean of ~161 images per SKU
CATCH_ALL_SHARE = 10_000 / RP2K_IMAGES  # the release's "others" class
TRAIN_ONLY, TEST_ONLY = 71 / RP2K_SKUS, 8 / RP2K_SKUS
TEST_FRACTION = 0.1
SIDE_RANGE = (80 / 224, 400 / 224)  # crop sides relative to --size, as the release's 80 to 400 px around 224


def scaled_catalogue(n_skus: int, n_images: int, seed: int = 0, per_sku: tuple[int, int] | None = None) -> list[Sku]:
    """``n_skus`` SKUs in product lines (2 to 4 siblings differing in one detail) with RP2K's
    long-tailed image counts summing to about ``n_images``; or, with ``per_sku=(train, test)``,
    exactly that many images for every SKU (no tail, no train-only or test-only SKUs), so
    stand-ins with more SKUs differ only in their number. The SKUs of a smaller catalogue are
    the first ones of a larger one with the same seed."""
    rng = np.random.default_rng([seed, 2388])
    skus, line = [], 0
    while len(skus) < n_skus:
        ptype, shape = line % 7, (line * 3 + line // 7) % 7
        brand = f"{_BRANDS_CN[line % len(_BRANDS_CN)]}{line // len(_BRANDS_CN)}号"
        vary_size = bool(rng.random() < 0.4)
        n_sib = min(int(rng.integers(2, 5)), len(_SIZES) if vary_size else 6, n_skus - len(skus))
        for s in range(n_sib):
            flavour, size = (0, s % 3) if vary_size else (s % 6, 0)
            skus.append((f"{brand}{_TYPE_CN[ptype]}{_FLAVOURS_CN[flavour]}{_SIZES[size]}", line, ptype, shape, brand,
                         flavour, size))
        line += 1
    if per_sku is not None:
        return [Sku(*sku, per_sku[0], per_sku[1]) for sku in skus]
    counts = _tail_counts(n_skus, n_images, rng)
    only = rng.permutation(n_skus)
    train_only = set(only[:round(TRAIN_ONLY * n_skus)].tolist())
    test_only = set(only[len(train_only):len(train_only) + round(TEST_ONLY * n_skus)].tolist())
    out = []
    for k, ((name, ln, ptype, shape, brand, flavour, size), n) in enumerate(zip(skus, counts)):
        # Every SKU with two or more images gets at least one test image, unless chosen train-only.
        n_test = n if k in test_only else 0 if k in train_only or n < 2 else max(1, int(round(n * TEST_FRACTION)))
        out.append(Sku(name, ln, ptype, shape, brand, flavour, size, n - n_test, n_test))
    return out


def _tail_counts(n_skus: int, n_images: int, rng) -> list[int]:
    """Lognormal counts (at least 1), one catch-all class, rescaled to sum to about ``n_images``."""
    raw = rng.lognormal(0.0, TAIL_SIGMA, n_skus)
    raw[int(rng.integers(n_skus))] = 0  # the catch-all class, set below
    budget = n_images * (1 - CATCH_ALL_SHARE)
    counts = np.maximum(1, np.round(raw / raw.sum() * budget)).astype(int)
    counts[counts == 0] = 1
    counts[np.argmin(raw)] = max(1, int(n_images * CATCH_ALL_SHARE))
    return counts.tolist()


def estimate_bytes(n_images: int, size: int) -> int:
    """Rough disk need of the JPEGs: about 0.25 bytes per pixel at the generator's qualities."""
    return int(n_images * 0.25 * size * size)


def generate_scaled(out: Path, n_skus: int = RP2K_SKUS, n_images: int = RP2K_IMAGES, size: int = 224,
                    seed: int = 0, workers: int | None = None, progress=None,
                    per_sku: tuple[int, int] | None = None) -> Path:
    """Write the stand-in to ``out`` (a temporary folder renamed into place; locked while written).
    ``per_sku=(train, test)`` gives every SKU that many images instead of RP2K's long tail."""
    if per_sku is not None:
        n_images = n_skus * sum(per_sku)

    def fill(tmp: Path) -> None:
        catalogue = scaled_catalogue(n_skus, n_images, seed, per_sku)
        _write_tables(tmp, catalogue, _render_parallel(tmp, catalogue, size, seed, workers, progress))
        write_marker(tmp, f"rp2k_synth_{n_skus}x{n_images}",
                     f"advrp2k stand-in, {n_skus} SKUs, about {n_images} images at {size} px, seed {seed}",
                     skus=n_skus, images=n_images, size=size, seed=seed)

    return write_dataset(out, f"the stand-in dataset {out}", fill)


def _render_parallel(root: Path, catalogue: list[Sku], size: int, seed: int, workers, progress) -> list:
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    chunk = max(1, math.ceil(len(catalogue) / (workers * 8)))
    jobs = [(str(root), catalogue[i:i + chunk], i, size, seed) for i in range(0, len(catalogue), chunk)]
    bar = progress(total=sum(s.n_train + s.n_test for s in catalogue), desc="generating stand-in") if progress else None
    rows = []
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(_render_chunk, jobs):
            rows += part
            if bar is not None:
                bar.update(len(part))
    if bar is not None:
        bar.close()
    return rows


def _render_chunk(job) -> list[tuple[str, str]]:
    root, skus, first, size, seed = job
    cfg = SynthConfig(seed=seed)
    rows = []
    for k, sku in enumerate(skus, first):
        line = _Line(sku, seed)
        for split, n in (("train", sku.n_train), ("test", sku.n_test)):
            if not n:
                continue
            folder = Path(root) / "all" / split / sku.name
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, k, 0 if split == "train" else 1])
            for i in range(n):
                side = int(size * np.exp(rng.uniform(*np.log(SIDE_RANGE))))
                aspect = rng.uniform(0.7, 1.3)
                shape = (max(8, int(side * min(1, aspect))), max(8, int(side * min(1, 1 / aspect))))
                fname = f"{k:05d}_{i:06d}.jpg"
                (folder / fname).write_bytes(_shelf_photo(_render_product(sku, line, cfg, rng), rng, shape))
                rows.append((f"all/{split}/{sku.name}/{fname}", sku.name))
    return rows
