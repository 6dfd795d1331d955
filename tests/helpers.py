"""Helpers shared by the tests: random batches, the CLI in this process, the CLI and Python in a
new process. One copy each, instead of one per test file."""
from __future__ import annotations

import subprocess
import sys

import torch
from click.testing import CliRunner

#: The CLI as a new process (``python -m advrp2k`` works too; this form needs no __main__).
CLI = [sys.executable, "-c", "from advrp2k.cli import main; main()"]


def random_batch(n: int, classes: int = 4, seed: int = 0, uint8: bool = False, size: int = 8):
    """``n`` random ``size`` x ``size`` RGB images (float in [0, 1], or uint8) and labels, seeded."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    if uint8:
        x = (x * 255).to(torch.uint8)
    return x, torch.randint(0, classes, (n,), generator=g)


def invoke(*args, catch_exceptions: bool = True):
    """``advrp2k ARGS`` in this process (click's runner); every argument is passed as a string."""
    return CliRunner().invoke(_cli(), [str(a) for a in args], catch_exceptions=catch_exceptions)


def _cli():
    from advrp2k.cli import cli

    return cli


def run_cli(*args, env: dict | None = None, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``advrp2k ARGS`` in a new process, output captured as text."""
    return subprocess.run([*CLI, *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def run_python(code: str, env: dict | None = None, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -c CODE`` in a new process, output captured as text."""
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)

