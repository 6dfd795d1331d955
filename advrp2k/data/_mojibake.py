"""Undo wrong-codepage unzips: UTF-8 (or GBK) bytes that a tool decoded as CP437 or CP1252."""
from __future__ import annotations

import re

_CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
_WRONG = ("cp437", "cp1252", "latin-1", "cp850")
_RIGHT = ("utf-8", "gbk")


def repair_name(name: str) -> str | None:
    """Return the name as its author wrote it, if ``name`` looks like mojibake of CJK text.

    Returns None when no re-decoding yields text with CJK characters (already right, or
    garbled beyond repair; then the caller resolves it through meta.csv's image names).
    """
    if _CJK.search(name) or name.isascii():
        return None
    for wrong in _WRONG:
        try:
            raw = name.encode(wrong)
        except UnicodeEncodeError:
            continue
        for right in _RIGHT:
            try:
                fixed = raw.decode(right)
            except UnicodeDecodeError:
                continue
            if _CJK.search(fixed):
                return fixed
    return None
