"""Leaderboard entries: one JSON file per evaluated model, validated on write and on read.

``<leaderboard>/entries/<dataset>/<threat_model>/<model_id>.json`` is the source of truth;
``leaderboard.json`` and the site are generated from these files, never edited by hand.
A rewrite merges into the existing file, so fields written by hand (name, authors, link,
venue, footnote) survive re-evaluation.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ._io import read_json, write_json
from .errors import EntryValidationError

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("schema.json")
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
SAFE_ID = re.compile(SCHEMA["$defs"]["safe_id"]["pattern"])
REQUIRED = set(SCHEMA["required"])
KNOWN = set(SCHEMA["properties"])
HAND_FIELDS = {"name", "authors", "link", "venue", "footnote", "submitted"}
LINK_FIELDS = ("link",)
CUSTOM_CHECKED = {"clean_acc", "robust_acc", "link", "model_id", "dataset"}


def entry_path(leaderboard: str | Path, entry: dict) -> Path:
    validate_entry(entry)
    return Path(leaderboard) / "entries" / entry["dataset"] / entry["threat_model"] / f"{entry['model_id']}.json"


def write_entry(leaderboard: str | Path, entry: dict) -> Path:
    """Validate and atomically write ``entry``, keeping hand-written fields of an existing file."""
    path = entry_path(leaderboard, entry)
    if path.is_file():
        try:
            old = read_json(path)
        except ValueError:
            old = {}
        entry = {**{k: v for k, v in old.items() if k in HAND_FIELDS}, **entry}
    validate_entry(entry)
    return write_json(path, entry)


def _problem(field: str, msg: str, where: str) -> str:
    return f"{where}: field '{field}': {msg}"


def _acc_problems(entry: dict, where: str) -> list[str]:
    out = []

    def check(field, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 <= value <= 1:
            out.append(_problem(field, f"must be a finite number in [0, 1], got {value!r}", where))
            return False
        return True

    clean_ok = check("clean_acc", entry.get("clean_acc"))
    robust = entry.get("robust_acc")
    if not isinstance(robust, dict) or not robust:
        return out + [_problem("robust_acc", "must be an object like {\"8/255\": 0.12}", where)]
    prev = None
    for label in sorted(robust, key=_eps_value):
        value = robust[label]
        if not check(f"robust_acc.{label}", value):
            continue
        if clean_ok and value > entry["clean_acc"] + 1e-12:
            out.append(_problem(f"robust_acc.{label}", f"robust accuracy {value} exceeds clean {entry['clean_acc']}", where))
        if prev is not None and value > prev[1] + 1e-12:
            out.append(_problem(f"robust_acc.{label}", f"not monotone in eps: {value} at {label} > {prev[1]} at {prev[0]}", where))
        prev = (label, value)
    return out


def _eps_value(label: str) -> float:
    try:
        from ._eps import parse_eps

        return parse_eps(label, allow_zero=True).value
    except Exception:
        return float("inf")


def entry_problems(entry: dict, where: str = "entry") -> list[str]:
    """Every schema and cross-field problem of ``entry``, one message each naming the field."""
    if not isinstance(entry, dict):
        return [f"{where}: an entry must be a JSON object"]
    out = [_problem(k, "unknown field", where) for k in sorted(set(entry) - KNOWN)]
    out += [_problem(k, "missing", where) for k in sorted(REQUIRED - set(entry))]
    out += _schema_problems(entry, where)
    model_id = entry.get("model_id")
    if not isinstance(model_id, str) or not SAFE_ID.match(model_id) or ".." in model_id:
        out.append(_problem("model_id", f"{model_id!r} is not safe as a file name (letters, digits, _ . + -)", where))
    for key in ("dataset", "threat_model"):
        if key in entry and (not isinstance(entry[key], str) or not SAFE_ID.match(entry[key])):
            out.append(_problem(key, f"{entry[key]!r} is not safe as a folder name", where))
    out += _acc_problems(entry, where)
    for key in LINK_FIELDS:
        if key in entry and (not isinstance(entry[key], str) or not entry[key].startswith("https://")):
            out.append(_problem(key, f"links must start with https:// (got {entry[key]!r})", where))
    if "synthetic" in entry and not isinstance(entry["synthetic"], bool):
        out.append(_problem("synthetic", "must be true or false", where))
    return out


def _schema_problems(entry: dict, where: str) -> list[str]:
    """JSON Schema errors other than unknown/missing fields (reported above, one per field)."""
    import jsonschema

    out = []
    for err in jsonschema.Draft202012Validator(SCHEMA).iter_errors(entry):
        if err.validator in ("additionalProperties", "required") and not err.path:
            continue
        field = ".".join(str(p) for p in err.absolute_path) or "(entry)"
        if field.split(".")[0] in CUSTOM_CHECKED:
            continue  # these fields get a clearer message from the cross-field checks
        out.append(_problem(field, err.message[:200], where))
    return out


def validate_entry(entry: dict, where: str = "entry") -> None:
    problems = entry_problems(entry, where)
    if problems:
        raise EntryValidationError("; ".join(problems))


def load_entries(leaderboard: str | Path) -> tuple[list[dict], list[str]]:
    """All entries under ``<leaderboard>/entries`` and the problems of those that fail validation."""
    entries, problems = [], []
    for path in sorted((Path(leaderboard) / "entries").rglob("*.json")):
        try:
            entry = read_json(path)
        except ValueError as exc:
            problems.append(f"{path}: not valid JSON ({exc})")
            continue
        found = entry_problems(entry, str(path))
        if not found and path.stem != entry["model_id"]:
            found = [f"{path}: field 'model_id': {entry['model_id']!r} does not match the file name"]
        problems += found
        if not found:
            entries.append(entry)
    return entries, problems
