"""The ranked table written as a file (``advrp2k export``): CSV safe to open in a spreadsheet.

A spreadsheet program evaluates a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return as a formula, so a submitter's model name such as ``=HYPERLINK(...)`` would
run in every reader's spreadsheet. Such text cells are written with a leading apostrophe, as
OWASP recommends for CSV injection; numbers are numbers and are left as they are.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from advrp2k.core.io import atomic_write

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize_formulas(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` whose text cells cannot be read as spreadsheet formulas."""
    safe = table.copy()
    for column in safe.columns:
        if pd.api.types.is_object_dtype(safe[column]) or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS)
                                            else v)
    return safe


def write_table(table: pd.DataFrame, out: Path, fmt: str) -> Path:
    """Write ``table`` atomically as ``csv`` (formulas neutralised), ``json`` or ``parquet``."""
    if fmt == "csv":
        return atomic_write(out, lambda f: neutralize_formulas(table).to_csv(f, index=False), mode="w")
    if fmt == "json":
        return atomic_write(out, lambda f: f.write(table.to_json(orient="records", indent=2, force_ascii=False)),
                            mode="w")
    return atomic_write(out, lambda f: table.to_parquet(f, index=False))
