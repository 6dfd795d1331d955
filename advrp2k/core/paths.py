"""Where caches live (generated data, scans, trained models) and where results are written."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_home() -> Path:
    """``$ADVRP2K_HOME`` if set, else the platform's user cache dir (honours XDG_CACHE_HOME)."""
    env = os.environ.get("ADVRP2K_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("advrp2k"))


#: Where ``eval``, ``submit`` and ``reproduce`` write entries when no ``--leaderboard`` is given: a
#: folder of the user's own, never the repository's shipped ``leaderboard/`` (that one only by path).
RESULTS_DIR = "advrp2k-results"


def results_home() -> Path:
    """``$ADVRP2K_RESULTS`` if set, else ``./advrp2k-results`` in the current folder."""
    return Path(os.environ.get("ADVRP2K_RESULTS") or RESULTS_DIR).expanduser()


def cache_dir(*parts: str) -> Path:
    path = cache_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
