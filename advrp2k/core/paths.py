"""Where caches live: generated data, scans and trained models."""
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


def cache_dir(*parts: str) -> Path:
    path = cache_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
