"""Opening and decoding one image file, refusing whatever cannot be decoded whole.

Only regular files are opened (no FIFO, device or link to one: a FIFO named ``*.jpg`` would
block forever, a link to ``/dev/zero`` would be read until memory runs out), and at most
``MAX_FILE_BYTES`` of them. An image must be a JPEG, at most ``MAX_PIXELS`` pixels by its
header, and decode whole: Pillow fills a JPEG whose data ends early (cut short with an end
marker appended, or a header declaring more rows than the data holds) with grey and says
nothing, so ``check_jpeg`` decodes it once more with libjpeg-turbo in strict mode
(``simplejpeg``), which raises on every recoverable error. The pixels themselves always come
from Pillow, so every cache and trained model sees the same tensors as before the check.
"""
from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile

from advrp2k.core.errors import DataError

#: A shelf crop is a few hundred kB; anything this large is not one (and is not read whole).
MAX_FILE_BYTES = 64 << 20
#: RP2K's crops are at most a few megapixels; a header declaring more is refused before decoding.
MAX_PIXELS = 50_000_000
#: Pillow's names for what libjpeg decodes (MPO: a camera's multi-picture JPEG).
JPEG_FORMATS = {"JPEG", "MPO"}

# Never let Pillow fill a truncated file with grey: a half-written JPEG must fail to decode.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageRefused(OSError):
    """The file is not an image advrp2k uses; the message says why (one line)."""


def read_regular_file(path: Path, limit: int | None = None) -> bytes:
    """The bytes of ``path`` if it is (or links to) a regular file of at most ``limit`` bytes
    (default ``MAX_FILE_BYTES``).

    Opened non-blocking and checked again on the open descriptor, so a FIFO swapped in after
    the first check cannot block the read either.

    Raises:
        ImageRefused: not a regular file, a broken link, or over ``limit``.
    """
    limit = MAX_FILE_BYTES if limit is None else limit
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageRefused("a broken symbolic link (its target does not exist)") from None
    _check_regular(st, limit)
    with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as handle:
        _check_regular(os.fstat(handle.fileno()), limit)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ImageRefused(f"larger than {limit >> 20} MiB: not a shelf crop")
    return data


def _check_regular(st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise ImageRefused(f"{kind}, not an image file: remove it from the dataset folder")
    if st.st_size > limit:
        raise ImageRefused(f"larger than {limit >> 20} MiB ({st.st_size >> 20} MiB): not a shelf crop")


def check_jpeg(data: bytes) -> None:
    """Refuse ``data`` unless it is a JPEG within ``MAX_PIXELS`` that libjpeg decodes whole.

    Costs one greyscale decode (about half of Pillow's RGB decode of the same file); the scan
    runs it once per image, and the scan is cached.

    Raises:
        ImageRefused: another format, over the pixel limit, or data that ends early or is corrupt.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (w, h) = img.format, img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageRefused(f"corrupt or truncated image ({exc})") from None
    if fmt not in JPEG_FORMATS:
        raise ImageRefused(f"a {fmt} image named like a JPEG: only JPEGs are used")
    if w * h > MAX_PIXELS:
        raise ImageRefused(f"{w} x {h} pixels, over the limit of {MAX_PIXELS / 1e6:.0f} megapixels")
    _strict_decode(data)


def _strict_decode(data: bytes) -> None:
    try:
        import simplejpeg
    except ImportError:  # a dependency of advrp2k; only a broken install lacks it
        raise DataError("cannot check JPEGs: the simplejpeg package is missing: "
                        "python3 -m pip install 'simplejpeg>=1.9'") from None
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)
    except TypeError:  # a release without strict mode
        raise DataError("cannot check JPEGs: this simplejpeg has no strict mode: "
                        "python3 -m pip install -U 'simplejpeg>=1.9'") from None
    except ValueError as exc:
        raise ImageRefused(f"corrupt or truncated JPEG ({exc}): its missing part would be filled with grey") \
            from None


def decode_image(path: Path, strict: bool = False) -> tuple[Image.Image, bytes]:
    """Fully decode a JPEG to RGB (grayscale and CMYK converted) and return it with its bytes.

    Args:
        strict: run ``check_jpeg`` first (the scan does; later decodes read files the scan
            accepted, whose content its cache key covers).

    Raises:
        OSError: the file is refused (``ImageRefused``) or Pillow cannot decode it whole.
    """
    data = read_regular_file(Path(path))
    if strict:
        check_jpeg(data)
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decodes every byte; verify() alone misses truncation
        return img.convert("RGB"), data


def resize_to_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """``(3, size, size)`` uint8: bilinear resize only (evaluation transforms end at ToTensor)."""
    img = img.resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
