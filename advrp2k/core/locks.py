"""One file lock per cache item (dataset, scan, tensors, model, per-example results).

Runs that share a cache (a team, a cluster array job) wait for each other instead of racing:
the second run blocks until the first has finished the item, then finds it and reuses it.
A run that has to wait says so once (logged at WARNING), naming the item.

POSIX ``flock`` locks are released by the kernel when the holder dies (kill -9 included), so
a crashed run never leaves a stale lock behind. The lock file sits beside the item
(``<item>.lock``) and is never deleted: deleting it would let two runs lock two different
files of the same name.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


@contextlib.contextmanager
def item_lock(item: str | Path, what: str) -> Iterator[None]:
    """Hold the exclusive lock of cache item ``item`` (a file or folder path) for the block.

    Args:
        item: the path the lock protects; the lock file is ``<item>.lock``.
        what: how to name the item to a user who has to wait ("the model cache of ...").
    """
    lock_path = Path(str(item) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another advrp2k run that is preparing %s (lock %s)", what, lock_path)
            start = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            log.warning("the other run finished %s after %.0f s; continuing", what, time.monotonic() - start)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
