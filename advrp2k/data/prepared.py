"""The prepared data cache: every usable image decoded once into memory-mappable uint8 shards.

``advrp2k data prepare PATH --image-size 224`` writes, under
``$ADVRP2K_HOME/prepared/<fingerprint>_<size>/``, one ``.npy`` file per shard of up to 4,096
images (``(n, 3, S, S)`` uint8: 150 kB per image at 224 px) and, last, ``index.json`` (labels,
SKU names, source paths, the dataset fingerprint). Shards are written atomically and an
interrupted run resumes at the first missing one. Training and evaluation use the cache by
themselves when it matches the data (same fingerprint and size); its images are the very
tensors the decoding path produces (the same decode and resize).
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write, write_json
from .._locks import item_lock
from ..paths import cache_dir

SHARD = 4096
INDEX = "index.json"


def prepared_dir(fingerprint: str, size: int) -> Path:
    return cache_dir("prepared") / f"{fingerprint[:24]}_{size}"


def bytes_per_image(size: int) -> int:
    return 3 * size * size


def prepare(scan, size: int, workers: int | None = None, progress=None) -> Path:
    """Decode every usable image of ``scan`` at ``size`` into shards; resumable, locked while written."""
    folder = prepared_dir(scan.fingerprint, size)
    with item_lock(folder, f"the prepared cache {folder}"):
        if (folder / INDEX).is_file():
            return folder
        total = sum(len(v) for v in scan.samples.values())
        bar = progress(total=total, desc=f"preparing {size} px") if progress else None
        workers = workers or max(1, min(8, os.cpu_count() or 1))
        index = {"fingerprint": scan.fingerprint, "image_size": size, "classes": scan.classes, "splits": {}}
        with ProcessPoolExecutor(workers) as pool:
            for split, items in scan.samples.items():
                shards = []
                for k in range(0, len(items), SHARD):
                    name = f"{split}-{k // SHARD:05d}.npy"
                    part = items[k:k + SHARD]
                    if not _complete(folder / name, len(part), size):
                        _write_shard(folder / name, scan.root, part, size, pool, workers)
                    shards.append({"file": name, "n": len(part)})
                    if bar is not None:
                        bar.update(len(part))
                index["splits"][split] = {"shards": shards, "labels": [lab for _, lab in items],
                                          "paths": [rel for rel, _ in items]}
        write_json(folder / INDEX, index)  # written last: its presence means complete
        if bar is not None:
            bar.close()
    return folder


def _complete(path: Path, n: int, size: int) -> bool:
    try:
        return np.load(path, mmap_mode="r").shape == (n, 3, size, size)
    except (OSError, ValueError):
        return False


def _write_shard(path: Path, root: str, items, size: int, pool, workers: int) -> None:
    paths = [os.path.join(root, rel) for rel, _ in items]
    step = max(1, len(paths) // (workers * 4))
    chunks = pool.map(_decode_chunk, [(paths[i:i + step], size) for i in range(0, len(paths), step)])
    arr = np.concatenate(list(chunks)) if paths else np.zeros((0, 3, size, size), np.uint8)
    atomic_write(path, lambda f: np.save(f, arr))


def _decode_chunk(job) -> np.ndarray:
    from .rp2k import _resize_to_tensor, decode_image

    paths, size = job
    return np.stack([_resize_to_tensor(decode_image(Path(p))[0], size).numpy() for p in paths])


class PreparedSplit:
    """A prepared split, indexed like a uint8 ``(N, 3, S, S)`` tensor; shards are memory-mapped,
    so nothing holds the whole split in RAM."""

    def __init__(self, folder: Path, shards: list[dict], rows: np.ndarray | None = None):
        self.folder, self.shards = folder, shards
        self._maps = [None] * len(shards)
        self._offsets = np.cumsum([0] + [s["n"] for s in shards])
        self.rows = np.arange(self._offsets[-1]) if rows is None else rows

    def __len__(self) -> int:
        return len(self.rows)

    def _map(self, k: int):
        if self._maps[k] is None:
            self._maps[k] = np.load(self.folder / self.shards[k]["file"], mmap_mode="r")
        return self._maps[k]

    def __getitem__(self, idx):
        if isinstance(idx, slice):  # a sub-split, still memory-mapped
            return PreparedSplit(self.folder, self.shards, self.rows[idx])
        ids = self.rows[np.asarray(idx.tolist() if isinstance(idx, torch.Tensor) else idx, dtype=np.int64)]
        shard = np.searchsorted(self._offsets, ids, side="right") - 1
        out = np.empty((len(ids), *self._map(0).shape[1:]), dtype=np.uint8) if len(ids) else \
            np.zeros((0, 3, 1, 1), np.uint8)
        for k in np.unique(shard):
            where = np.flatnonzero(shard == k)
            rows = ids[where] - self._offsets[k]
            order = np.argsort(rows, kind="stable")  # ascending offsets read the mapped file forwards
            out[where[order]] = self._map(int(k))[rows[order]]
        return torch.from_numpy(out)


def open_prepared(scan, split: str, size: int) -> PreparedSplit | None:
    """The prepared split when a complete cache matches the scan's fingerprint and ``size``."""
    folder = prepared_dir(scan.fingerprint, size)
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if index.get("fingerprint") != scan.fingerprint or index.get("image_size") != size or split not in index["splits"]:
        return None
    entry = index["splits"][split]
    if entry["labels"] != [lab for _, lab in scan.samples.get(split, [])]:
        return None
    return PreparedSplit(folder, entry["shards"])
