"""Leaderboard entries: one JSON file per evaluated model, validated on write and on read.

``<leaderboard>/entries/<dataset>/<threat_model>/<model_id>.json`` is the source of truth;
``leaderboard.json`` and the site are generated from these files, never edited by hand.
A rewrite merges into the existing file, so fields written by hand (name, authors, link,
venue, footnote) survive re-evaluation.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path

from advrp2k.core.eps import by_eps
from advrp2k.core.io import read_json, write_json
from advrp2k.core.errors import EntryValidationError

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("schema.json")
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
SAFE_ID = re.compile(SCHEMA["$defs"]["safe_id"]["pattern"])
REQUIRED = set(SCHEMA["required"])
KNOWN = set(SCHEMA["properties"])
HAND_FIELDS = {"name", "authors", "link", "venue", "footnote", "submitted"}
LINK_FIELDS = ("link",)
CUSTOM_CHECKED = {"clean_acc", "robust_acc", "link", "model_id", "dataset"}
#: An entry is a few kB; anything far larger is refused unread (a 2,388-class entry is ~100 kB).
MAX_ENTRY_BYTES = 4 << 20


def entry_file(leaderboard: str | Path, dataset: str, threat_model: str, model_id: str) -> Path:
    """Where the entry of ``model_id`` on (``dataset``, ``threat_model``) lives (no validation)."""
    return Path(leaderboard) / "entries" / dataset / threat_model / f"{model_id}.json"


def entry_path(leaderboard: str | Path, entry: dict) -> Path:
    """Where ``entry`` is written; validated first, so that no field can steer the path."""
    validate_entry(entry)
    return entry_file(leaderboard, entry["dataset"], entry["threat_model"], entry["model_id"])


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
    return f"{where}: field '{_cut(field, 80)}': {msg}"


def _cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was: messages stay readable."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _short(value, limit: int = 60) -> str:
    return _cut(repr(value), limit)


def _acc_problems(entry: dict, where: str) -> list[str]:
    out = []

    def check(field, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 <= value <= 1:
            out.append(_problem(field, f"must be a finite number in [0, 1], got {_short(value)}", where))
            return False
        return True

    clean_ok = check("clean_acc", entry.get("clean_acc"))
    robust = entry.get("robust_acc")
    if not isinstance(robust, dict) or not robust:
        return out + [_problem("robust_acc", "must be an object like {\"8/255\": 0.12}", where)]
    prev = None
    for label in by_eps(robust):
        value = robust[label]
        if not check(f"robust_acc.{label}", value):
            continue
        if clean_ok and value > entry["clean_acc"] + 1e-12:
            out.append(_problem(f"robust_acc.{label}", f"robust accuracy {value} exceeds clean {entry['clean_acc']}", where))
        if prev is not None and value > prev[1] + 1e-12:
            out.append(_problem(f"robust_acc.{label}", f"not monotone in eps: {value} at {label} > {prev[1]} at {prev[0]}", where))
        prev = (label, value)
    return out


def entry_problems(entry: dict, where: str = "entry") -> list[str]:
    """Every schema and cross-field problem of ``entry``, one message each naming the field."""
    if not isinstance(entry, dict):
        return [f"{where}: an entry must be a JSON object"]
    out = [_problem(k, "unknown field", where) for k in sorted(set(entry) - KNOWN)]
    out += [_problem(k, "missing", where) for k in sorted(REQUIRED - set(entry))]
    out += _schema_problems(entry, where)
    model_id = entry.get("model_id")
    if not isinstance(model_id, str) or not SAFE_ID.match(model_id) or ".." in model_id:
        out.append(_problem("model_id", f"{_short(model_id)} is not safe as a file name (letters, digits, _ . + -)", where))
    for key in ("dataset", "threat_model"):
        if key in entry and (not isinstance(entry[key], str) or not SAFE_ID.match(entry[key])):
            out.append(_problem(key, f"{_short(entry[key])} is not safe as a folder name", where))
    out += _acc_problems(entry, where)
    for key in LINK_FIELDS:
        if key in entry and (not isinstance(entry[key], str) or not entry[key].startswith("https://")):
            out.append(_problem(key, f"links must start with https:// (got {_short(entry[key])})", where))
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
        out.append(_problem(field, _schema_message(err), where))
    return out


def _schema_message(err) -> str:
    """A JSON Schema error in one short line that still says why (the value itself is cut)."""
    if err.validator == "maxLength":
        return f"is too long ({len(err.instance)} characters; at most {err.validator_value})"
    if err.validator == "type":
        return f"must be of type {err.validator_value}, got {_short(err.instance)}"
    if len(err.message) <= 200:
        return err.message
    return f"{_short(err.instance)} fails the schema rule {err.validator}: {_short(err.validator_value)}"


def validate_hand_fields(fields: dict) -> None:
    """Check a submitter's fields (name, authors, link, venue, footnote) on their own, before any work.

    Raises:
        EntryValidationError: every problem, one per field.
    """
    import jsonschema

    problems = [_problem(k, "is not a field a submitter sets", "submission") for k in sorted(set(fields) - HAND_FIELDS)]
    for key in sorted(set(fields) & HAND_FIELDS):
        for err in jsonschema.Draft202012Validator(SCHEMA["properties"][key]).iter_errors(fields[key]):
            problems.append(_problem(key, _schema_message(err), "submission"))
    if isinstance(fields.get("link"), str) and not fields["link"].startswith("https://"):
        problems.append(_problem("link", f"links must start with https:// (got {_short(fields['link'])})", "submission"))
    if problems:
        raise EntryValidationError("; ".join(dict.fromkeys(problems)))


def validate_entry(entry: dict, where: str = "entry") -> None:
    problems = entry_problems(entry, where)
    if problems:
        raise EntryValidationError("; ".join(problems))


def load_entries(leaderboard: str | Path) -> tuple[list[dict], list[str]]:
    """All entries under ``<leaderboard>/entries`` and the problems of those that fail validation.

    Whatever lies in the folder, every file is looked at and every problem reported: only
    regular ``.json`` files inside the folder are read (no symbolic links, FIFOs or devices,
    nothing over ``MAX_ENTRY_BYTES``), and a bad file never stops the others.
    """
    entries, problems = [], []
    for path in _entry_files(Path(leaderboard) / "entries", problems):
        try:
            entry = json.loads(read_regular_file(path))
        except (ValueError, OSError) as exc:
            problems.append(f"{path}: not read: {_cut(str(exc), 200)}")
            continue
        found = entry_problems(entry, str(path))
        if not found and path.stem != entry["model_id"]:
            found = [f"{path}: field 'model_id': {entry['model_id']!r} does not match the file name"]
        problems += found
        if not found:
            entries.append(entry)
    return entries, problems


def _entry_files(top: Path, problems: list[str]) -> list[Path]:
    """The ``.json`` files under ``top``, never following symbolic links (they are reported)."""
    out = []
    for folder, dirs, files in os.walk(top, followlinks=False):
        for name in sorted(dirs):
            if os.path.islink(os.path.join(folder, name)):
                problems.append(f"{os.path.join(folder, name)}: a symbolic link to a folder: not followed")
        dirs.sort()
        out += [Path(folder) / f for f in sorted(files) if f.endswith(".json")]
    return out


def read_regular_file(path: Path) -> str:
    """The text of ``path`` if it is a regular file of sane size; OSError (saying why) otherwise.

    Opened without following a link and without blocking (a FIFO would wait for a writer forever).
    """
    if path.is_symlink():
        raise OSError("a symbolic link: not read (entries must be files inside the folder)")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file (a FIFO, device or socket): not read")
        if info.st_size > MAX_ENTRY_BYTES:
            raise OSError(f"{info.st_size} bytes, over the {MAX_ENTRY_BYTES}-byte limit of an entry: not read")
        return handle.read(MAX_ENTRY_BYTES + 1).decode("utf-8")
