"""The CSV files beside the images: ``meta.csv`` (SKU identity) and ``attributes.csv`` (per SKU).

Both are read whole and checked before any image is decoded, so a typo costs seconds, not a
decode of 384k images. Every problem is one ``DataError`` line naming the file, the line and
what to do: an encoding other than UTF-8 (UTF-16, GBK), another delimiter, a missing column,
an oversized field (usually a quote never closed), a row with more fields than the header,
and two rows that say different things about one image or one SKU. Names are compared in
their canonical Unicode form (``canonical_name``), so an NFD name from a macOS unzip and the
NFC name of the same SKU are one SKU.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter, defaultdict
from pathlib import Path

from advrp2k.core.errors import DataError
from advrp2k.data._mojibake import canonical_name
from advrp2k.data.listing import SPLITS
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def read_table(path: Path, required: list[tuple[str, ...]]) -> tuple[list[str], list[tuple[int, dict]]]:
    """Read a UTF-8 CSV (with or without a BOM) into ``(header, [(line number, row dict)])``.

    Args:
        required: column alternatives that must be present, e.g. ``[("sku", "instance_id")]``.

    Raises:
        DataError: one line naming the file, the line and the remedy.
    """
    text = _decode(path, Path(path).read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict]] = []
    try:
        header = [h.strip() for h in next(reader, [])]
        _check_header(path, header, required)
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if len(fields) > len(header):
                raise DataError(f"{path} line {reader.line_num}: {len(fields)} fields where the header has "
                                f"{len(header)}: quote fields that contain commas, or add the column to the header")
            rows.append((reader.line_num, dict(zip(header, (f.strip() for f in fields)))))
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: {exc} (usually a quote that is never closed): "
                        "fix that line") from None
    return header, rows


def _decode(path: Path, raw: bytes) -> str:
    if raw.startswith(_UTF16_BOMS) or (len(raw) > 1 and raw.count(b"\0") > len(raw) // 4):
        raise DataError(f"{path} is saved in UTF-16: save it as UTF-8 (\"CSV UTF-8\" in a spreadsheet "
                        f"program, or: iconv -f UTF-16 -t UTF-8 {path})")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        try:
            raw.decode("gbk")
            hint = f"it looks like GBK (Chinese Windows): convert it with iconv -f GBK -t UTF-8 {path}"
        except UnicodeDecodeError:
            hint = "save it as UTF-8"
        raise DataError(f"{path} line {line} is not UTF-8: {hint}") from None


def _check_header(path: Path, header: list[str], required: list[tuple[str, ...]]) -> None:
    for names in required:
        if any(n in header for n in names):
            continue
        joined = ",".join(header)
        used = next((what for d, what in _DELIMITERS.items() if d in joined and "," not in joined), None)
        if used:
            raise DataError(f"{path} line 1 is separated by {used}, not commas: save it as comma-separated CSV")
        want = " or ".join(repr(n) for n in names)
        raise DataError(f"{path} line 1 has no {want} column (found {header}): add it to the header")


def read_meta(path: Path) -> tuple[set[str], dict[tuple[str, str], Counter], list[dict]]:
    """SKU names, ``{(split, image basename): Counter of SKUs}`` and notes from ``meta.csv``
    (a note for each SKU it names in more than one Unicode form: one SKU, said so).

    Raises:
        DataError: a bad file, or one image path listed under two SKUs.
    """
    _, rows = read_table(path, [("image_path",), ("instance_id",)])
    skus: set[str] = set()
    by_base: dict[tuple[str, str], Counter] = defaultdict(Counter)
    seen: dict[str, tuple[str, int]] = {}
    forms: dict[str, set[str]] = defaultdict(set)
    for line, row in rows:
        forms[canonical_name(row.get("instance_id") or "")].add((row.get("instance_id") or "").strip())
        sku = canonical_name(row.get("instance_id") or "")
        image = canonical_name((row.get("image_path") or "").replace("\\", "/").strip("/"))
        if not sku:
            continue
        if image in seen and seen[image][0] != sku:
            raise DataError(f"{path} lines {seen[image][1]} and {line} list {image} under two SKUs "
                            f"({seen[image][0]!r} and {sku!r}): keep the right row and delete the other")
        seen.setdefault(image, (sku, line))
        skus.add(sku)
        parts = image.split("/")
        split = next((p for p in parts if p in SPLITS), "")
        by_base[(split, parts[-1])][sku] += 1
    notes = [{"path": path.name, "note": f"SKU {sku!r} is written in {len(raw)} Unicode forms: one SKU"}
             for sku, raw in sorted(forms.items()) if sku and len(raw) > 1]
    return skus, by_base, notes


def read_attributes(path: str | Path) -> dict[str, dict[str, str]]:
    """Read a per-SKU attribute table (CSV with a ``sku`` or ``instance_id`` column).

    Raises:
        DataError: a bad file, or two rows of one SKU that disagree.
    """
    path = Path(path)
    header, rows = read_table(path, [("sku", "instance_id")])
    key = "sku" if "sku" in header else "instance_id"
    table: dict[str, dict[str, str]] = {}
    lines: dict[str, int] = {}
    for line, row in rows:
        sku = canonical_name(row.get(key) or "")
        if not sku:
            continue
        values = {k: row.get(k, "") for k in header if k != key and k}
        if sku in table and table[sku] != values:
            raise DataError(f"{path} lines {lines[sku]} and {line} give SKU {sku!r} different attributes: "
                            "keep one row per SKU")
        table[sku], lines[sku] = values, lines.get(sku, line)
    return table


def attributes_digest(attributes: dict[str, dict[str, str]]) -> str | None:
    """SHA-256 of an attribute table's content (None without one): per-group results depend on it."""
    if not attributes:
        return None
    return hashlib.sha256(json.dumps(attributes, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
