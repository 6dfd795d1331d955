"""The prepared data cache: every usable image decoded once into uint8 shards read row by row.

``advrp2k data prepare PATH --image-size 224`` writes, under
``$ADVRP2K_HOME/prepared/<fingerprint>_<size>/``, one ``.npy`` file per shard of up to 4,096
images (``(n, 3, S, S)`` uint8: 150 kB per image at 224 px), beside each the SHA-256 of its
bytes (``<shard>.sha256``), and, last, ``index.json`` (labels, SKU names, source paths, the
dataset fingerprint, every shard's checksum). Shards are written atomically and an
interrupted run resumes at the first missing one. Every open verifies the checksums of the
shards it will read (hashed by several threads, about 1.7 GB/s per core), so a shard whose
bytes changed (bit rot, a stray write) is treated like a missing one: not used, a warning that
names the repair command, decoding instead. Training and evaluation use the cache by
themselves when it matches the data (same fingerprint and size); its images are the very
tensors the decoding path produces (the same decode and resize). Rows are read with ``preadv``
into the caller's buffer (see ``PreparedSplit.gather_into``), so nothing maps or holds a whole
split in memory.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from advrp2k.core.io import atomic_write, write_json
from advrp2k.core.locks import item_lock
from advrp2k.core.errors import DataError, OutputError
from advrp2k.core.paths import cache_dir

log = logging.getLogger(__name__)

SHARD = 4096
INDEX = "index.json"


def prepared_dir(fingerprint: str, size: int) -> Path:
    return cache_dir("prepared") / f"{fingerprint[:24]}_{size}"


def bytes_per_image(size: int) -> int:
    return 3 * size * size


def is_prepared(scan, size: int) -> bool:
    """Whether a complete, undamaged cache of ``scan`` at ``size`` exists."""
    folder = prepared_dir(scan.fingerprint, size)
    index = _read_index(folder)
    return index is not None and _damaged(folder, index, list(index.get("splits") or {})) is None


def check_space(scan, size: int) -> None:
    """Raise ``OutputError`` before any work when the cache's disk cannot hold the shards still
    to be written (those of an interrupted run count as written)."""
    folder = prepared_dir(scan.fingerprint, size)
    need = sum(len(v) for v in scan.samples.values()) * bytes_per_image(size)
    need -= sum(f.stat().st_size for f in folder.glob("*.npy")) if folder.is_dir() else 0
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise OutputError(f"the prepared cache needs about {need / 2**30:.1f} GiB more under {folder.parent} and "
                          f"{free / 2**30:.1f} GiB are free there: free some space, or set ADVRP2K_HOME to a "
                          "folder on a larger disk")


def prepare(scan, size: int, workers: int | None = None, progress=None) -> Path:
    """Decode every usable image of ``scan`` at ``size`` into shards; resumable, locked while written.

    Each shard is verified once (size and checksum) and rewritten only when it is missing, cut
    short or changed, so a complete cache costs one hashing pass and a damaged one is repaired
    shard by shard; decoding processes start only when a shard is written.
    """
    folder = prepared_dir(scan.fingerprint, size)
    with item_lock(folder, f"the prepared cache {folder}"):
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
                    digest = _recorded_digest(folder / name)
                    if _shard_problem(folder / name, len(part), size, digest):
                        _write_shard(folder / name, scan.root, part, size, pool, workers)
                        digest = _recorded_digest(folder / name)
                    shards.append({"file": name, "n": len(part), "sha256": digest})
                    if bar is not None:
                        bar.update(len(part))
                index["splits"][split] = {"shards": shards, "labels": [lab for _, lab in items],
                                          "paths": [rel for rel, _ in items]}
        write_json(folder / INDEX, index)  # written last: its presence means complete
        if bar is not None:
            bar.close()
    return folder


def _read_header(path: Path) -> tuple[tuple, bool, np.dtype, int]:
    """``(shape, Fortran order, dtype, byte offset of the data)`` of a ``.npy`` file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = getattr(np.lib.format, f"read_array_header_{version[0]}_0")(f)
        return shape, fortran, dtype, f.tell()


def _complete(path: Path, n: int, size: int) -> bool:
    """Whether the shard file holds n C-ordered uint8 images of ``size`` px in full."""
    try:
        shape, fortran, dtype, offset = _read_header(path)
    except (OSError, ValueError):
        return False
    return shape == (n, 3, size, size) and not fortran and dtype == np.uint8 and \
        path.stat().st_size >= offset + n * bytes_per_image(size)


def _read_index(folder: Path) -> dict | None:
    """The folder's index (written last, so present only once every shard was), or None."""
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) else None


def _damaged(folder: Path, index: dict, splits: list[str]) -> str | None:
    """What is wrong with the shards of ``splits`` that ``index`` lists (None: nothing): missing,
    cut short, or bytes other than those written (checksum; hashed in parallel threads)."""
    try:
        size = index["image_size"]
        shards = [sh for split in splits for sh in index["splits"][split]["shards"]]
        jobs = [(folder / sh["file"], sh["n"], size, sh.get("sha256")) for sh in shards]
    except (KeyError, TypeError, AttributeError) as exc:
        return f"its index is malformed ({exc})"
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as pool:  # hashlib releases the GIL
        return next((p for p in pool.map(lambda job: _shard_problem(*job), jobs) if p), None)


def _shard_problem(path: Path, n: int, size: int, digest: str | None) -> str | None:
    """Why the shard file is not the one written for these n images (None: it is)."""
    if not _complete(path, n, size):
        return f"{path.name} is missing or shorter than its {n} images"
    if digest is None:
        return f"{path.name} has no checksum (written by an older advrp2k)"
    if _file_sha256(path) != digest:
        return f"{path.name} changed since it was written (checksum mismatch)"
    return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _recorded_digest(path: Path) -> str | None:
    """The checksum written beside the shard when it was written, if any."""
    try:
        return path.with_name(path.name + ".sha256").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def _write_shard(path: Path, root: str, items, size: int, pool, workers: int) -> None:
    """Decode ``items`` into the shard file, then write the checksum of the file as written beside
    it, so any later change of its bytes shows."""
    paths = [os.path.join(root, rel) for rel, _ in items]
    step = max(1, len(paths) // (workers * 4))
    chunks = pool.map(_decode_chunk, [(paths[i:i + step], size) for i in range(0, len(paths), step)])
    arr = np.concatenate(list(chunks)) if paths else np.zeros((0, 3, size, size), np.uint8)
    atomic_write(path, lambda f: np.save(f, arr))
    atomic_write(path.with_name(path.name + ".sha256"), lambda f: f.write(_file_sha256(path) + "\n"), mode="w")


def _decode_chunk(job) -> np.ndarray:
    from advrp2k.data.decode import decode_image, resize_to_tensor

    paths, size = job
    return np.stack([resize_to_tensor(decode_image(Path(p))[0], size).numpy() for p in paths])


class _ShardFiles:
    """Open shard files of one prepared split, shared by its sub-splits: for each shard a file
    descriptor and the byte offset of its first image. Rows are read with ``os.preadv`` straight
    into the caller's buffer: one copy from the page cache and no page faults on a mapping
    (where ``preadv`` is missing, a memory map is read instead)."""

    def __init__(self, folder: Path, shards: list[dict]):
        self.folder, self.shards = folder, shards
        self.offsets = np.cumsum([0] + [s["n"] for s in shards])  # first row of each shard
        self._open: list = [None] * len(shards)

    def shard(self, k: int):
        """``(fd, data offset, row shape)`` of shard k, or ``(None, memory map, row shape)``."""
        if self._open[k] is None:
            path = self.folder / self.shards[k]["file"]
            shape, fortran, dtype, offset = _read_header(path)
            if fortran or dtype != np.uint8 or shape[0] != self.shards[k]["n"]:
                raise DataError(f"{path} is not a C-ordered uint8 shard of {self.shards[k]['n']} images; "
                                "run 'advrp2k data prepare' again to repair the cache")
            self._open[k] = (_open_for_rows(path), offset, tuple(shape[1:])) if hasattr(os, "preadv") \
                else (None, np.load(path, mmap_mode="r"), tuple(shape[1:]))
        return self._open[k]

    def __del__(self):
        for opened in self._open:
            if opened is not None and opened[0] is not None:
                os.close(opened[0])


def _open_for_rows(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    if hasattr(os, "posix_fadvise"):  # reads are whole rows in shuffled order: read-ahead would be wasted
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    return fd


class PreparedSplit:
    """A prepared split, indexed like a uint8 ``(N, 3, S, S)`` tensor; rows are read from the
    shard files on demand, so nothing holds the whole split in RAM."""

    def __init__(self, files: _ShardFiles, rows: np.ndarray | None = None):
        self.files = files
        self.rows = np.arange(files.offsets[-1]) if rows is None else rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.files.shard(0)[2]

    def __getitem__(self, idx):
        if isinstance(idx, slice):  # a sub-split, still read on demand
            return PreparedSplit(self.files, self.rows[idx])
        idx = np.asarray(idx.tolist() if isinstance(idx, torch.Tensor) else idx, dtype=np.int64)
        out = torch.empty((len(idx), *self.row_shape), dtype=torch.uint8) if len(idx) else \
            torch.zeros((0, 3, 1, 1), dtype=torch.uint8)
        self.gather_into(idx, out)
        return out

    def gather_into(self, idx, out: torch.Tensor) -> None:
        """Write rows ``idx`` (positions in this split) into ``out[:len(idx)]``, a contiguous uint8
        CPU tensor of row shape; safe to call from several threads on disjoint parts of ``out``."""
        ids = self.rows[np.asarray(idx, dtype=np.int64)]
        offsets = self.files.offsets
        shard = np.searchsorted(offsets, ids, side="right") - 1
        dest = out.numpy()
        size = int(np.prod(self.row_shape))
        flat = memoryview(dest.reshape(-1))  # out is contiguous: row i is bytes [i * size, (i + 1) * size)
        opened = {k: self.files.shard(k) for k in set(shard.tolist())}
        for i, (row, k) in enumerate(zip((ids - offsets[shard]).tolist(), shard.tolist())):
            fd, where, _ = opened[k]
            if fd is None:
                dest[i] = where[row]
            elif os.preadv(fd, [flat[i * size:(i + 1) * size]], where + row * size) != size:
                raise DataError(f"a shard in {self.files.folder} was cut short while in use; "
                                "run 'advrp2k data prepare' again to repair the cache")


def open_prepared(scan, split: str, size: int) -> PreparedSplit | None:
    """The prepared split when a complete cache matches the scan's fingerprint and ``size``."""
    folder = prepared_dir(scan.fingerprint, size)
    index = _read_index(folder)
    if index is None:
        return None
    if index.get("fingerprint") != scan.fingerprint or index.get("image_size") != size or split not in index["splits"]:
        return None
    entry = index["splits"][split]
    if entry["labels"] != [lab for _, lab in scan.samples.get(split, [])]:
        return None
    problem = _damaged(folder, index, [split])
    if problem is not None:
        log.warning("not using the prepared cache %s: %s; 'advrp2k data prepare %s --image-size %d' repairs it",
                    folder, problem, scan.root, size)
        return None
    return PreparedSplit(_ShardFiles(folder, entry["shards"]))
