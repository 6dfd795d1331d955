"""SKU names as their authors wrote them: wrong-codepage unzips undone (UTF-8 or GBK bytes that
a tool decoded as CP437 or CP1252), and one Unicode form for every name."""
from __future__ import annotations

import re
import unicodedata

_CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
_WRONG = ("cp437", "cp1252", "latin-1", "cp850")
_RIGHT = ("utf-8", "gbk")
# GBK decodes almost any byte pair, so a Latin name such as "Crème" (CP437 bytes 43 72 8A 65)
# would "repair" into a hanzi; accept GBK only where every non-ASCII byte pairs with another in
# GB2312's range, as Chinese text encoded in GBK does.
_GB2312_TEXT = re.compile(rb"(?:[\x00-\x7f]|[\xa1-\xfe][\xa1-\xfe])*")


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
            if right == "gbk" and not _GB2312_TEXT.fullmatch(raw):
                continue
            try:
                fixed = raw.decode(right)
            except UnicodeDecodeError:
                continue
            if _CJK.search(fixed):
                return fixed
    return None


def canonical_name(name: str) -> str:
    """``name`` stripped and in Unicode NFC: a macOS unzip writes NFD (a letter and its accent as
    two code points), so the same SKU can arrive in two forms that compare unequal."""
    return unicodedata.normalize("NFC", name.strip())
