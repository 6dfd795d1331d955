"""Progress for long work: a bar on a terminal, a plain line now and then elsewhere."""
from __future__ import annotations

import sys


def _progress():
    """tqdm on a terminal-ish stderr; silent when ADVRP2K_NO_PROGRESS=1."""
    import os

    from advrp2k.core import distributed

    if os.environ.get("ADVRP2K_NO_PROGRESS") == "1" or not distributed.is_main():
        return None  # under torchrun only the main process shows progress
    from tqdm.auto import tqdm

    def factory(iterable=None, **kw):
        kw.setdefault("dynamic_ncols", True)
        kw.setdefault("leave", False)
        kw.setdefault("mininterval", 1.0)
        return tqdm(iterable, file=sys.stderr, **kw)

    return factory
