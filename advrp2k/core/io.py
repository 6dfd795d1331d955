"""Atomic file writes: a crash never leaves a half-written result behind."""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from advrp2k.core.errors import OutputError

#: What to tell a user for the write errors people meet (full disk, quota, read-only, permission).
_REMEDIES = {
    errno.ENOSPC: "the disk is full: free space there, or point the option (or ADVRP2K_HOME) at another disk",
    errno.EDQUOT: "the disk quota is used up: free space there, or point the option (or ADVRP2K_HOME) elsewhere",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EACCES: "permission denied: choose a folder you can write to, or fix its permissions",
    errno.EPERM: "operation not permitted: choose a folder you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EEXIST: "a part of the path exists and is not a folder: choose another path",
}


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write through a temporary file in the same folder, fsync, then rename over ``path``.

    Args:
        path: destination.
        write: called with the open temporary file object.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        kwargs = {"encoding": "utf-8"} if "b" not in mode else {}
        with os.fdopen(fd, mode, **kwargs) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _REMEDIES:
            raise output_error(path, exc) from None
        raise
    return path


def write_error_errnos() -> set[int]:
    """The errno values that mean "this location cannot be written" (and have a remedy to name)."""
    return set(_REMEDIES)


def output_error(path: str | Path, exc: OSError) -> OutputError:
    """One line naming the path, what went wrong and what to do."""
    remedy = _REMEDIES.get(exc.errno, exc.strerror or str(exc))
    return OutputError(f"cannot write {path}: {exc.strerror or exc}; {remedy}")


def check_output_dir(path: str | Path, what: str) -> Path:
    """Make sure ``path`` is, or can be created as, a writable folder, before any long work.

    Nothing is created: a probe file is written, fsynced and removed in ``path`` or, when it
    does not exist yet, in its nearest existing ancestor, so a read-only mount, a missing
    permission or a full disk is found now rather than hours later.

    Args:
        what: how the user names the location, e.g. "--leaderboard" or "ADVRP2K_HOME".

    Raises:
        OutputError: naming the path and what to do.
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is not a folder" if existing == path else f"cannot be created: {existing} is not a folder"
        raise OutputError(f"{what} {path} {where}; pass a folder (it is created if missing)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".advrp2k-probe-", dir=existing)
        try:
            os.write(fd, b"\0" * 65536)  # a full disk refuses data, not always an empty file
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {path} is not writable: {exc.strerror or exc}; "
                          f"{_REMEDIES.get(exc.errno, 'choose another folder')}") from None
    return path


def check_output_file(path: str | Path, what: str) -> Path:
    """Make sure ``path`` can be written as a file (not a folder) in a writable folder, before work.

    Raises:
        OutputError: naming the path and what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder: pass a file path, such as {path / 'leaderboard.csv'}")
    check_output_dir(path.parent, f"the folder of {what}")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> Path:
    """Atomically write ``data`` as pretty, key-sorted UTF-8 JSON (NaN refused)."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    return atomic_write(path, lambda f: f.write(text), mode="w")


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
