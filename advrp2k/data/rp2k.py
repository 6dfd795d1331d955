"""Scan and load the RP2K release as users have it (see docs: rp2k-release.md).

The scan resolves the root level, reads meta.csv (the authority for SKU identity and class
order when present), maps folder names (mojibake included) to SKUs, drops junk, fully decodes
every image so that truncated files are caught, and fingerprints the content. It is cached,
keyed by the folder listing, so the next run does not decode everything again.
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFile

from .._io import atomic_write, read_json, write_json
from .._locks import item_lock
from ..errors import DataError
from ..paths import cache_dir
from ._mojibake import repair_name

log = logging.getLogger(__name__)
SPLITS = ("train", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg"}
SYSTEM_JUNK = {".ds_store", "thumbs.db", "desktop.ini"}
SCAN_VERSION = 1
# Never let Pillow fill a truncated file with grey: a half-written JPEG must fail to decode.
ImageFile.LOAD_TRUNCATED_IMAGES = False


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

    def summary(self) -> dict:
        return {
            "root": self.root, "meta_csv": self.meta_csv, "n_skus": len(self.classes),
            "n_images": {s: len(self.samples.get(s, [])) for s in SPLITS},
            "skus_only_in": {s: self._only_in(s) for s in SPLITS},
            "renamed_folders": {k: v for k, v in self.folder_to_sku.items() if k != v},
            "problems": self.problems, "fingerprint": self.fingerprint,
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
    for folder in (root, root.parent):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_meta(meta: Path) -> tuple[set[str], dict]:
    """Return (SKU names, {(split, basename): Counter of SKUs}) from meta.csv."""
    skus: set[str] = set()
    by_base: dict[tuple[str, str], Counter] = defaultdict(Counter)
    with open(meta, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "image_path" not in reader.fieldnames or "instance_id" not in reader.fieldnames:
            raise DataError(f"{meta} has no image_path/instance_id columns (found {reader.fieldnames}); "
                            f"fix or remove it to fall back to folder names")
        for row in reader:
            sku = (row["instance_id"] or "").strip()
            parts = (row["image_path"] or "").replace("\\", "/").strip("/").split("/")
            if not sku:
                continue
            skus.add(sku)
            split = next((p for p in parts if p in SPLITS), "")
            by_base[(split, parts[-1])][sku] += 1
    return skus, by_base


def _junk_reason(path: Path) -> str | None:
    name = path.name
    if name.lower() in SYSTEM_JUNK or name.startswith("._") or name.startswith("."):
        return "system junk file (macOS/Windows metadata)"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not a JPEG image ({path.suffix or 'no extension'}): ignored"
    return None


def _list_files(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{split: {folder name: [files]}}, skipping __MACOSX trees."""
    tree: dict[str, dict[str, list[Path]]] = {}
    for split in SPLITS:
        base = root / "all" / split
        tree[split] = {}
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "__MACOSX")
            rel = Path(dirpath).relative_to(base)
            folder = rel.parts[0] if rel.parts else ""
            tree[split].setdefault(folder, []).extend(Path(dirpath) / f for f in sorted(filenames))
    return tree


def _listing_key(root: Path, tree) -> str:
    digest = hashlib.sha256(f"v{SCAN_VERSION}|{root.resolve()}".encode())
    for p in (root / "meta.csv", root.parent / "meta.csv"):
        if p.is_file():
            st = p.stat()
            digest.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    for split in SPLITS:
        for folder in sorted(tree[split]):
            for f in tree[split][folder]:
                st = f.stat()
                digest.update(f"{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def decode_image(path: Path) -> tuple[Image.Image, bytes]:
    """Fully decode a JPEG to RGB (grayscale and CMYK converted); raise OSError if truncated."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decodes every byte; verify() alone misses truncation
        return img.convert("RGB"), data


def _resolve_folder(split, folder, files, meta_skus, by_base) -> str | None:
    if meta_skus is None:
        return repair_name(folder) or folder
    if folder in meta_skus:
        return folder
    repaired = repair_name(folder)
    if repaired in meta_skus:
        return repaired
    # Wrong-codepage names differ between unzip tools: vote by the image basenames instead.
    votes: Counter = Counter()
    for f in files:
        votes.update(by_base.get((split, f.name), Counter()))
    return votes.most_common(1)[0][0] if votes else None


def scan_rp2k(path: str | Path, progress: Callable | None = None, use_cache: bool = True) -> Rp2kScan:
    """Scan an RP2K copy (any of its three root levels) and return what the loader will use.

    Args:
        path: the download folder, ``rp2k_dataset/`` or ``all/``.
        progress: optional ``tqdm``-like factory called with (iterable, total=, desc=).
        use_cache: reuse a previous scan of the identical listing.
    """
    root = find_rp2k_root(path)
    tree = _list_files(root)
    if not any(tree[s] for s in SPLITS):
        raise DataError(f"{root}/all has no train or test SKU folders: expected all/train/<sku>/*.jpg")
    key = _listing_key(root, tree)
    cache_file = cache_dir("scans") / f"{key}.json"
    with item_lock(cache_file, f"the scan of {root}"):  # a run that waited reuses the other's scan
        if use_cache and cache_file.is_file():
            try:
                return Rp2kScan(**read_json(cache_file))
            except (ValueError, TypeError, OSError):
                log.warning("ignoring unreadable scan cache %s", cache_file)
        scan = _scan(root, tree, progress)
        write_json(cache_file, asdict(scan))
    return scan


def _scan(root: Path, tree, progress) -> Rp2kScan:
    meta = _find_side_file(root, "meta.csv")
    meta_skus, by_base = _read_meta(meta) if meta else (None, {})
    problems, folder_to_sku, accepted = [], {}, {s: [] for s in SPLITS}
    for split in SPLITS:
        for folder, files in tree[split].items():
            if folder == "":
                problems += [{"path": str(f.relative_to(root)), "reason": "file outside any SKU folder"} for f in files]
                continue
            sku = _resolve_folder(split, folder, files, meta_skus, by_base)
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
    classes = sorted(meta_skus) if meta_skus is not None else sorted(set(folder_to_sku.values()))
    index = {c: i for i, c in enumerate(classes)}
    samples, hashes = _decode_all(root, accepted, index, problems, progress)
    fingerprint = hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()
    attrs = _find_side_file(root, "attributes.csv")
    return Rp2kScan(str(root), str(meta) if meta else None, classes, samples, problems, folder_to_sku,
                    fingerprint, read_attributes(attrs) if attrs else {})


def _decode_all(root, accepted, index, problems, progress):
    samples: dict[str, list] = {s: [] for s in SPLITS}
    hashes = []
    items = [(s, f, sku) for s in SPLITS for f, sku in accepted[s]]
    iterator = progress(items, total=len(items), desc="decoding images") if progress else items
    for split, f, sku in iterator:
        rel = str(f.relative_to(root))
        try:
            _, data = decode_image(f)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            problems.append({"path": rel, "reason": f"corrupt or truncated image ({exc})"})
            continue
        samples[split].append((rel, index[sku]))
        hashes.append(f"{split}|{sku}|{hashlib.sha256(data).hexdigest()}")
    return samples, hashes


def read_attributes(path: str | Path) -> dict[str, dict[str, str]]:
    """Read a per-SKU attribute table (CSV with a ``sku`` or ``instance_id`` column)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        key = next((k for k in ("sku", "instance_id") if k in (reader.fieldnames or [])), None)
        if key is None:
            raise DataError(f"attribute table {path} needs a 'sku' column (found {reader.fieldnames})")
        return {row[key].strip(): {k: (v or "").strip() for k, v in row.items() if k != key} for row in reader}


def load_split(scan: Rp2kScan, split: str, image_size: int, progress: Callable | None = None,
               max_bytes: int = 2 << 30) -> tuple[torch.Tensor | LazyImages, torch.Tensor]:
    """Decode a split into uint8 ``(N, 3, S, S)`` images and int64 labels, cached on disk.

    Eval transforms end at ToTensor(): resize only, no normalisation, no augmentation.
    A prepared cache of the same data and size (``advrp2k data prepare``) is used when present;
    else a split larger than ``max_bytes`` comes back as ``LazyImages``, decoded batch by batch.
    """
    from .prepared import open_prepared

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
        try:
            blob = torch.load(cache_file, map_location="cpu", weights_only=True)
            return blob["x"], blob["y"]
        except Exception:  # a corrupt cache is rebuilt, never trusted
            log.warning("rebuilding unreadable tensor cache %s", cache_file)
    x = torch.empty((len(items), 3, image_size, image_size), dtype=torch.uint8)
    iterator = progress(items, total=len(items), desc=f"loading {split}") if progress else items
    for i, (rel, _) in enumerate(iterator):
        x[i] = _resize_to_tensor(decode_image(Path(scan.root) / rel)[0], image_size)
    atomic_write(cache_file, lambda f: torch.save({"x": x, "y": y}, f))
    return x, y


def _resize_to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    img = img.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


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
        return _resize_to_tensor(decode_image(self.root / self.items[i][0])[0], self.size)

    def __getitem__(self, idx):
        from concurrent.futures import ThreadPoolExecutor

        if isinstance(idx, slice):  # a sub-split, still lazy
            part = object.__new__(LazyImages)
            part.__dict__ = {**self.__dict__, "items": self.items[idx]}
            return part

        ids = [int(i) for i in (idx.tolist() if isinstance(idx, torch.Tensor) else idx)]
        with ThreadPoolExecutor(self.workers) as pool:
            return torch.stack(list(pool.map(self._one, ids)))

