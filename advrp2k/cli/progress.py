"""Progress for long work: a bar on a terminal, a plain line now and then elsewhere.

Library functions take a ``progress`` factory with tqdm's small surface: called as
``progress(iterable=None, total=, desc=, initial=)``, the result is iterated or given
``update(n)``, ``set_postfix(**kw)`` and ``close()``. On a terminal that is tqdm. In a log file,
CI or a scheduler's output a bar's carriage-return updates pile up into thousands of fragments,
so there the same calls print one plain line every ``ADVRP2K_PROGRESS_INTERVAL`` seconds (30 by
default) and one when the work ends.
"""
from __future__ import annotations

import os
import sys
import time

DEFAULT_INTERVAL_S = 30.0


class LineProgress:
    """tqdm's surface as plain lines: ``desc: done/total (pct) elapsed, postfix``."""

    def __init__(self, iterable=None, total=None, desc: str = "", initial: int = 0, interval: float = DEFAULT_INTERVAL_S,
                 stream=None, clock=time.monotonic, **_ignored):
        self.iterable, self.desc, self.n = iterable, desc or "working", initial
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.interval, self.stream, self.clock = interval, stream or sys.stderr, clock
        self.start = self.last = clock()
        self.postfix, self.closed = "", False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line(done=True)

    def _line(self, done: bool = False) -> None:
        count = f"{self.n}/{self.total}" if self.total else str(self.n)
        pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        state = "done in" if done else "after"
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {count}{pct} {state} {self.clock() - self.start:.0f} s{extra}", file=self.stream, flush=True)


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("ADVRP2K_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def progress_factory(stream=None):
    """The factory to hand to long work: tqdm on a terminal, ``LineProgress`` otherwise, None
    (no progress) when ``ADVRP2K_NO_PROGRESS=1`` or in a torchrun process other than the main one."""
    from advrp2k.core import distributed

    stream = stream or sys.stderr
    if os.environ.get("ADVRP2K_NO_PROGRESS") == "1" or not distributed.is_main():
        return None
    if not stream.isatty():
        interval = _interval()
        return lambda iterable=None, **kw: LineProgress(iterable, interval=interval, stream=stream, **kw)
    from tqdm.auto import tqdm

    def bar(iterable=None, **kw):
        kw.setdefault("dynamic_ncols", True)
        kw.setdefault("leave", False)
        kw.setdefault("mininterval", 1.0)
        return tqdm(iterable, file=stream, **kw)

    return bar
