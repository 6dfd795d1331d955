"""Start-up time of the light commands, beside the interpreter's own.

    python3 benchmarks/startup.py [--reps 5]

Each command runs ``--reps`` times in a new process (interleaved); the medians are printed with
their ratio to ``python -c pass``, and whether the process imported torch.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = "import sys, runpy; sys.argv = ['advrp2k', *{args!r}]\ntry:\n    runpy.run_module('advrp2k', run_name='__main__')\n" \
        "except SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)"


def commands(site: str) -> dict[str, list[str]]:
    return {"python -c pass": [], "advrp2k --help": ["--help"], "advrp2k list": ["list"],
            "advrp2k leaderboard validate": ["leaderboard", "validate", str(ROOT / "leaderboard")],
            "advrp2k leaderboard build": ["leaderboard", "build", str(ROOT / "leaderboard"), "--out", site]}


def timed(args: list[str] | None) -> tuple[float, bool]:
    code = "pass" if not args else PROBE.format(args=args)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - start
    return wall, out.stderr.strip().endswith("True")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    reps = parser.parse_args().reps
    with tempfile.TemporaryDirectory() as site:
        cmds = commands(site)
        times = {name: [] for name in cmds}
        torch = {}
        for _ in range(reps):
            for name, args in cmds.items():
                wall, loaded = timed(args or None)
                times[name].append(wall)
                torch[name] = loaded
    base = statistics.median(times["python -c pass"])
    print(f"start-up, median of {reps} runs each ({sys.executable})")
    for name, walls in times.items():
        med = statistics.median(walls)
        print(f"  {name:<30} {med:6.2f} s  {med / base:6.1f}x python -c pass   imports torch: {torch[name]}")


if __name__ == "__main__":
    main()
