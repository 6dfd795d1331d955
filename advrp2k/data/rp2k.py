"""Scan and load the RP2K release as users have it (see docs: rp2k-release.md).

The scan resolves the root level, reads meta.csv (the authority for SKU identity and class
order when present) and attributes.csv before any image is decoded, maps folder names
(mojibake and other Unicode forms included) to SKUs, drops junk, refuses every image that
cannot be decoded whole (``advrp2k.data.decode``), and fingerprints the content. It is cached,
keyed by the listing and a signature of every file's content (``advrp2k.data.listing``), so the
next run does not decode everything again; the attribute table is read afresh every time.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from advrp2k.core.io import atomic_write, read_json, write_json
from advrp2k.core.locks import item_lock
from advrp2k.core.errors import DataError
from advrp2k.core.paths import cache_dir
from advrp2k.data._mojibake import canonical_name, repair_name
from advrp2k.data.decode import ImageRefused, decode_image, resize_to_tensor
from advrp2k.data.listing import SPLITS, Listing, list_files, listing_key
from advrp2k.data.tables import read_attributes, read_meta

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg"}
SYSTEM_JUNK = {".ds_store", "thumbs.db", "desktop.ini"}
SCAN_VERSION = 2  # 2: strict JPEG decoding, Unicode-normalised names, content-signed key


@dataclass
class Rp2kScan:
    """What the loader will use. Paths are relative to ``root`` (the folder holding ``all/``)."""

    root: str
    meta_csv: str | None
    classes: list[str]
    samples: dict[str, list[tuple[str, int]]]
    problems: list[dict] = field(default_factory=list)
    folder_to_sku: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[dict] = field(default_factory=list)  # links followed, names merged: used, but said

    def summary(self) -> dict:
        return {
            "root": self.root, "meta_csv": self.meta_csv, "n_skus": len(self.classes),
            "n_images": {s: len(self.samples.get(s, [])) for s in SPLITS},
            "skus_only_in": {s: self._only_in(s) for s in SPLITS},
            "renamed_folders": {k: v for k, v in self.folder_to_sku.items() if k != v},
            "problems": self.problems, "notes": self.notes, "fingerprint": self.fingerprint,
            "attributes": sorted({k for row in self.attributes.values() for k in row}),
            "images_per_sku": self._counts(),
        }

    def _counts(self) -> dict:
        """How images spread over SKUs (train and test together): RP2K's is very long-tailed."""
        counts = Counter(label for split in self.samples.values() for _, label in split)
        values = sorted(counts.values()) or [0]
        return {"min": values[0], "median": values[len(values) // 2], "max": values[-1],
                "skus_with_one_image": sum(v == 1 for v in values)}

    def _only_in(self, split: str) -> int:
        other = [s for s in SPLITS if s != split][0]
        mine = {i for _, i in self.samples.get(split, [])}
        return len(mine - {i for _, i in self.samples.get(other, [])})


def find_rp2k_root(path: str | Path) -> Path:
    """Accept the download folder, ``rp2k_dataset/``, or ``all/``; return the folder holding ``all/``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data folder {path} does not exist: pass the folder you unzipped RP2K into")
    candidates = [path / "rp2k_dataset", path] + ([path.parent] if path.name == "all" else [])
    for candidate in candidates:
        if any((candidate / "all" / s).is_dir() for s in SPLITS):
            return candidate
    raise DataError(f"no RP2K split found under {path}: expected {path}/all/train/<sku>/*.jpg "
                    f"(or {path}/rp2k_dataset/all/train/<sku>/*.jpg)")


def _find_side_file(root: Path, name: str) -> Path | None:
    """``name`` (meta.csv, attributes.csv) beside ``all/`` or one level up, if it is a file."""
    for folder in (root, root.parent):
        if (folder / name).is_file():
            return folder / name
    return None


def _junk_reason(path: Path) -> str | None:
    name = path.name
    if name.lower() in SYSTEM_JUNK or name.startswith("._") or name.startswith("."):
        return "system junk file (macOS/Windows metadata)"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not a JPEG image ({path.suffix or 'no extension'}): ignored"
    return None


def _is_image_name(path: Path) -> bool:
    return _junk_reason(path) is None


def _resolve_folder(split, folder, files, meta_skus, by_base) -> str | None:
    name = canonical_name(folder)
    if meta_skus is None:
        return canonical_name(repair_name(name) or name)
    if name in meta_skus:
        return name
    repaired = repair_name(name)
    if repaired is not None and canonical_name(repaired) in meta_skus:
        return canonical_name(repaired)
    # Wrong-codepage names differ between unzip tools: vote by the image basenames instead.
    votes: Counter = Counter()
    for f in files:
        votes.update(by_base.get((split, canonical_name(f.name)), Counter()))
    return votes.most_common(1)[0][0] if votes else None


@dataclass
class _SideFiles:
    """meta.csv and attributes.csv, read and checked before anything else."""

    meta: Path | None
    meta_skus: set[str] | None
    by_base: dict
    attributes_file: Path | None
    attributes: dict
    notes: list[dict]

    @classmethod
    def read(cls, root: Path) -> "_SideFiles":
        meta, attrs = _find_side_file(root, "meta.csv"), _find_side_file(root, "attributes.csv")
        meta_skus, by_base, notes = read_meta(meta) if meta else (None, {}, [])
        return cls(meta, meta_skus, by_base, attrs, read_attributes(attrs) if attrs else {}, notes)


def scan_rp2k(path: str | Path, progress: Callable | None = None, use_cache: bool = True) -> Rp2kScan:
    """Scan an RP2K copy (any of its three root levels) and return what the loader will use.

    Args:
        path: the download folder, ``rp2k_dataset/`` or ``all/``.
        progress: optional ``tqdm``-like factory called with (iterable, total=, desc=).
        use_cache: reuse a previous scan of the identical listing and content signatures
            (False: decode and hash every file again, and replace the cached scan).

    Raises:
        DataError: no RP2K layout, or a malformed meta.csv or attributes.csv (checked first).
    """
    root = find_rp2k_root(path)
    side = _SideFiles.read(root)
    listing = list_files(root)
    if not any(listing.files[s] for s in SPLITS):
        raise DataError(f"{root}/all has no train or test SKU folders: expected all/train/<sku>/*.jpg")
    key = listing_key(root, listing, [p for p in (side.meta, side.attributes_file) if p], SCAN_VERSION,
                      _is_image_name)
    cache_file = cache_dir("scans") / f"{key}.json"
    with item_lock(cache_file, f"the scan of {root}"):  # a run that waited reuses the other's scan
        scan = _cached_scan(cache_file) if use_cache else None
        if scan is None:
            scan = _scan(root, listing, side, progress)
            write_json(cache_file, {k: v for k, v in asdict(scan).items() if k != "attributes"})
    scan.attributes = side.attributes  # read afresh: an edited table is never stale
    return scan


def _cached_scan(cache_file: Path) -> Rp2kScan | None:
    if not cache_file.is_file():
        return None
    try:
        return Rp2kScan(**read_json(cache_file))
    except (ValueError, TypeError, OSError):
        log.warning("ignoring unreadable scan cache %s", cache_file)
        return None


def _scan(root: Path, listing: Listing, side: _SideFiles, progress) -> Rp2kScan:
    problems, notes = list(listing.problems), list(listing.notes) + side.notes
    folder_to_sku, accepted = {}, {s: [] for s in SPLITS}
    for split in SPLITS:
        for folder, files in listing.files[split].items():
            if folder == "":
                problems += [{"path": str(f.relative_to(root)), "reason": "file outside any SKU folder"} for f in files]
                continue
            sku = _resolve_folder(split, folder, files, side.meta_skus, side.by_base)
            if sku is None:
                problems.append({"path": f"all/{split}/{folder}",
                                 "reason": "SKU folder not in meta.csv and none of its images are listed there"})
                continue
            folder_to_sku[folder] = sku
            for f in files:
                reason = _junk_reason(f)
                if reason:
                    problems.append({"path": str(f.relative_to(root)), "reason": reason})
                else:
                    accepted[split].append((f, sku))
    notes += _merged_folders(listing, folder_to_sku)
    classes = sorted(side.meta_skus) if side.meta_skus is not None else sorted(set(folder_to_sku.values()))
    index = {c: i for i, c in enumerate(classes)}
    samples, hashes = _decode_all(root, accepted, index, problems, progress)
    fingerprint = hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()
    return Rp2kScan(str(root), str(side.meta) if side.meta else None, classes, samples, problems, folder_to_sku,
                    fingerprint, notes=notes)


def _merged_folders(listing: Listing, folder_to_sku: dict[str, str]) -> list[dict]:
    """Notes for folders of one split whose names differ but name the same SKU (one class)."""
    notes = []
    for split in SPLITS:
        by_sku: dict[str, list[str]] = {}
        for folder in listing.files[split]:
            if folder in folder_to_sku:
                by_sku.setdefault(folder_to_sku[folder], []).append(folder)
        notes += [{"path": f"all/{split}/{' + '.join(map(repr, names))}",
                   "note": f"{len(names)} folders name SKU {sku!r} (other Unicode forms or encodings): merged"}
                  for sku, names in by_sku.items() if len(names) > 1]
    return notes


def _decode_all(root, accepted, index, problems, progress):
    samples: dict[str, list] = {s: [] for s in SPLITS}
    hashes = []
    items = [(s, f, sku) for s in SPLITS for f, sku in accepted[s]]
    iterator = progress(items, total=len(items), desc="decoding images") if progress else items
    for split, f, sku in iterator:
        rel = str(f.relative_to(root))
        try:
            _, data = decode_image(f, strict=True)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            reason = str(exc) if isinstance(exc, ImageRefused) else f"corrupt or truncated image ({exc})"
            problems.append({"path": rel, "reason": reason})
            continue
        samples[split].append((rel, index[sku]))
        hashes.append(f"{split}|{sku}|{hashlib.sha256(data).hexdigest()}")
    return samples, hashes


def load_split(scan: Rp2kScan, split: str, image_size: int, progress: Callable | None = None,
               max_bytes: int = 2 << 30) -> tuple[torch.Tensor | LazyImages, torch.Tensor]:
    """Decode a split into uint8 ``(N, 3, S, S)`` images and int64 labels, cached on disk.

    Eval transforms end at ToTensor(): resize only, no normalisation, no augmentation.
    A prepared cache of the same data and size (``advrp2k data prepare``) is used when present;
    else a split larger than ``max_bytes`` comes back as ``LazyImages``, decoded batch by batch.
    """
    from advrp2k.data.prepared import open_prepared

    items = scan.samples.get(split, [])
    y = torch.tensor([label for _, label in items], dtype=torch.int64)
    prepared = open_prepared(scan, split, image_size)  # 'advrp2k data prepare' made it: rows read on demand
    if prepared is not None:
        log.info("reading the %s split from the prepared cache %s", split, prepared.files.folder)
        return prepared, y
    nbytes = len(items) * 3 * image_size * image_size
    if nbytes > max_bytes:
        log.warning("the %s split (%.1f GiB at %d px) will be decoded batch by batch; 'advrp2k data prepare %s "
                    "--image-size %d' decodes it once for every later run", split, nbytes / 2**30, image_size,
                    scan.root, image_size)
        return LazyImages(scan, split, image_size), y
    cache_file = cache_dir("tensors") / f"{scan.fingerprint[:24]}_{split}_{image_size}.pt"
    with item_lock(cache_file, f"the decoded {split} split"):
        return _cached_split(cache_file, scan, split, y, image_size, progress)


def _cached_split(cache_file: Path, scan: Rp2kScan, split: str, y, image_size: int, progress):
    """The decoded split from its tensor cache, decoding and caching it first if needed."""
    items = scan.samples[split]
    if cache_file.is_file():
        problem = "it is unreadable"
        try:
            blob = torch.load(cache_file, map_location="cpu", weights_only=True)
            problem = _tensor_cache_problem(blob, y)
            if problem is None:
                return blob["x"], blob["y"]
        except Exception:  # a corrupt cache is rebuilt, never trusted
            pass
        log.warning("rebuilding the tensor cache %s: %s", cache_file, problem)
    x = torch.empty((len(items), 3, image_size, image_size), dtype=torch.uint8)
    iterator = progress(items, total=len(items), desc=f"loading {split}") if progress else items
    for i, (rel, _) in enumerate(iterator):
        x[i] = resize_to_tensor(decode_image(Path(scan.root) / rel)[0], image_size)
    blob = {"x": x, "y": y, "sha256": pixels_sha256(x)}
    atomic_write(cache_file, lambda f: torch.save(blob, f))
    return x, y


def pixels_sha256(x: torch.Tensor) -> str:
    """SHA-256 of a contiguous uint8 tensor's bytes (about 1.7 GB/s on one core)."""
    return hashlib.sha256(memoryview(x.contiguous().numpy()).cast("B")).hexdigest()


def _tensor_cache_problem(blob, y: torch.Tensor) -> str | None:
    """What makes a loaded tensor cache unusable: bytes changed since it was written (checksum),
    no checksum (written before advrp2k kept one), or labels other than the scan's."""
    if not isinstance(blob, dict) or not isinstance(blob.get("x"), torch.Tensor) or "y" not in blob:
        return "it is malformed"
    if "sha256" not in blob:
        return "it has no checksum (written by an older advrp2k)"
    if pixels_sha256(blob["x"]) != blob["sha256"]:
        return "its bytes changed since it was written (checksum mismatch)"
    return None if torch.equal(blob["y"], y) else "its labels differ from the scan's"


class LazyImages:
    """A split too large for memory (real RP2K at 224 px), indexed like a uint8 tensor.

    ``images[idx]`` decodes those files (in a thread pool: Pillow releases the GIL while
    decoding) and returns ``(len(idx), 3, S, S)`` uint8, so the trainer and the evaluator
    treat it exactly like an in-memory split.
    """

    def __init__(self, scan: Rp2kScan, split: str, image_size: int, workers: int | None = None):
        self.root, self.items, self.size = Path(scan.root), scan.samples[split], image_size
        self.workers = workers or min(16, os.cpu_count() or 1)

    def __len__(self) -> int:
        return len(self.items)

    def _one(self, i: int) -> torch.Tensor:
        return resize_to_tensor(decode_image(self.root / self.items[i][0])[0], self.size)

    def __getitem__(self, idx):
        from concurrent.futures import ThreadPoolExecutor

        if isinstance(idx, slice):  # a sub-split, still lazy
            part = object.__new__(LazyImages)
            part.__dict__ = {**self.__dict__, "items": self.items[idx]}
            return part

        ids = [int(i) for i in (idx.tolist() if isinstance(idx, torch.Tensor) else idx)]
        with ThreadPoolExecutor(self.workers) as pool:
            return torch.stack(list(pool.map(self._one, ids)))

