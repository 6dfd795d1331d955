"""What files an RP2K copy holds, and the key of its scan cache.

A SKU folder that is a symbolic link is followed (a common way to assemble a copy) and said so
in the scan's notes; a link to a folder deeper down is not followed and is reported, so no
cycle can be walked. The scan cache's key covers, for every file, its path, size, modification
time and a signature of its content (SHA-256 of its first and last ``SIGNATURE_BYTES``): an
image replaced by another of the same size with its time kept (``rsync -a``, ``cp -p``) gives
another key. The side files (``meta.csv``, ``attributes.csv``) are hashed whole.
``advrp2k data inspect --verify`` hashes every byte of every image instead.
"""
from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "test")  # the release's folders under all/, in the order the scan reads them
SIGNATURE_BYTES = 4096


@dataclass
class Listing:
    """``files[split][folder]``: the files under ``all/<split>/<folder>/``; ``notes`` and
    ``problems``: ``{"path", "note"|"reason"}`` records of links followed or refused."""

    files: dict[str, dict[str, list[Path]]]
    notes: list[dict] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)


def list_files(root: Path) -> Listing:
    """Every file under ``root/all/{train,test}``, by SKU folder, skipping ``__MACOSX`` trees."""
    listing = Listing({s: {} for s in SPLITS})
    for split in SPLITS:
        base = root / "all" / split
        if not base.is_dir():
            continue
        for entry in sorted(os.scandir(base), key=lambda e: e.name):
            rel = f"all/{split}/{entry.name}"
            if entry.is_symlink() and entry.is_dir():
                listing.notes.append({"path": rel, "note": f"SKU folder is a symbolic link to "
                                                           f"{os.path.realpath(entry.path)}: followed"})
            if entry.is_dir() and entry.name != "__MACOSX":
                listing.files[split][entry.name] = _walk(Path(entry.path), rel, listing.problems)
            elif not entry.is_dir():
                listing.files[split].setdefault("", []).append(Path(entry.path))
    return listing


def _walk(folder: Path, rel: str, problems: list[dict]) -> list[Path]:
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for d in list(dirnames):
            if (here / d).is_symlink():
                problems.append({"path": f"{rel}/{(here / d).relative_to(folder)}",
                                 "reason": "a symbolic link to a folder inside a SKU folder: not followed"})
        dirnames[:] = sorted(d for d in dirnames if d != "__MACOSX" and not (here / d).is_symlink())
        files.extend(here / f for f in sorted(filenames))
    return files


def file_signature(path: Path, image: bool) -> bytes:
    """Size, modification time, file type and (for an image) its first and last bytes.

    Never opens anything but a regular file, so a FIFO or a device cannot block the key.
    """
    try:
        st = os.stat(path)
    except OSError:
        return b"unreadable"
    sig = f"{st.st_size}|{st.st_mtime_ns}|{stat.S_IFMT(st.st_mode)}|".encode()
    if not image or not stat.S_ISREG(st.st_mode):
        return sig
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return sig + b"unopenable"
    try:
        return sig + os.pread(fd, SIGNATURE_BYTES, 0) + os.pread(fd, SIGNATURE_BYTES, max(0, st.st_size - SIGNATURE_BYTES))
    finally:
        os.close(fd)


def listing_key(root: Path, listing: Listing, side_files: list[Path], version: int,
                is_image) -> str:
    """The scan cache's key: what the scan would read, content signatures included."""
    digest = hashlib.sha256(f"v{version}|{root.resolve()}".encode())
    for p in side_files:
        digest.update(f"{p.name}|{hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    paths = [f for split in SPLITS for folder in sorted(listing.files[split]) for f in listing.files[split][folder]]
    skip = len(str(root)) + 1  # relative paths by slicing: pathlib's relative_to costs more than the reads
    chunks = [paths[k:k + 512] for k in range(0, len(paths), 512)]  # one task per file would cost more than it does

    def sign(chunk: list[Path]) -> bytes:
        part = hashlib.sha256()
        for f in chunk:
            part.update(f"\n{str(f)[skip:]}|".encode())
            part.update(file_signature(f, is_image(f)))
        return part.digest()

    with ThreadPoolExecutor(8) as pool:  # I/O bound: a cold disk answers several reads at once
        for part in pool.map(sign, chunks):
            digest.update(part)
    return digest.hexdigest()[:32]
