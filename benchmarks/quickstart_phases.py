"""Where the quick start's cold run spends its time.

Runs ``advrp2k eval --defense madry --eps 8/255`` (the README's quick start) in this process with
nothing cached (a fresh ``ADVRP2K_HOME`` and leaderboard in a temporary folder) and prints the
wall time of each phase: data (stand-in generation, scan, decoding), training, evaluation (its
clean pass, attacks, checks) and analyses, with the process's page faults and kernel time.

    python3 benchmarks/quickstart_phases.py [--profile N] [--floor] [--keep DIR]

``--profile N`` also prints the N functions with the most own time (cProfile). ``--floor`` counts
the convolution and matrix-multiply FLOPs of training and evaluation as they run and prints the
time those kernels take on their own (``benchmarks/arithmetic_floor.py``): the part of each phase
no change around the kernels can remove. Counting adds a little Python work to every torch op, so
quote phase times from a run without it.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import os
import pstats
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

TIMES: dict[str, float] = defaultdict(float)
#: the phases whose arithmetic ``--floor`` counts (they hold all of the run's convolutions)
FLOOR_PHASES = ("training", "evaluation (all of it)")
COUNTER = None  # the ArithmeticCounter of a --floor run
#: phase -> (module, attribute) of the function whose calls make it up
PHASES = {
    "data: generate, scan, decode": ("advrp2k.jobs.run", "load_job_data"),
    "data: load test split": ("advrp2k.jobs.run", "load_split"),
    "training": ("advrp2k.jobs.model_store", "_train_and_save"),
    "evaluation (all of it)": ("advrp2k.jobs.run", "evaluate"),
    "  clean pass": ("advrp2k.eval.evaluator", "clean_pass"),
    "  attacks (suite, convergence check, escalation)": ("advrp2k.eval.engine", "Engine.run"),
    "  checks: preflight": ("advrp2k.eval.evaluator", "_preflight"),
    "  checks: convergence (its attacks included)": ("advrp2k.eval.evaluator", "check_convergence"),
    "analyses": ("advrp2k.jobs.run", "entry_analyses"),
}


def _timed(phase, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        counted = COUNTER is not None and phase in FLOOR_PHASES
        outer = COUNTER.phase if counted else None
        if counted:
            COUNTER.phase = phase
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[phase] += time.perf_counter() - start
            if counted:
                COUNTER.phase = outer
    return wrapper


def _print_floor() -> None:
    """Each counted phase's FLOPs, the time its kernels take alone, and that time's share."""
    from arithmetic_floor import floor_seconds

    print("  arithmetic floor: the phase's convolutions and matrix multiplies, each timed alone")
    total = 0.0
    for phase in FLOOR_PHASES:
        floor = floor_seconds(COUNTER, phase)
        total += floor["seconds"]
        share = floor["seconds"] / TIMES[phase] if TIMES[phase] else 0.0
        print(f"    {phase:<34} {floor['flops'] / 1e12:6.2f} TFLOP {floor['seconds']:8.1f} s "
              f"({100 * share:.0f} % of the phase; {100 * floor['replayed_share']:.0f} % of its FLOPs replayed)")
    print(f"    {'floor of the two phases':<34} {'':12} {total:8.1f} s")


def _instrument() -> None:
    import importlib

    for phase, (module, attr) in PHASES.items():
        owner = importlib.import_module(module)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, name, _timed(phase, getattr(owner, name)))


def main() -> None:
    global COUNTER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--floor", action="store_true", help="count FLOPs and print the arithmetic floor")
    parser.add_argument("--keep", type=Path, help="use this folder (kept) instead of a temporary one")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        os.environ["ADVRP2K_HOME"] = str(work / "cache")
        os.environ.setdefault("ADVRP2K_NO_PROGRESS", "1")
        from advrp2k.cli import cli

        _instrument()
        profiler = cProfile.Profile() if args.profile else None
        if args.floor:
            from arithmetic_floor import ArithmeticCounter

            COUNTER = stack.enter_context(ArithmeticCounter())
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        with profiler or contextlib.nullcontext():
            try:
                cli(["eval", "--defense", "madry", "--eps", "8/255", "--leaderboard", str(work / "lb")],
                    standalone_mode=False)
            except SystemExit:
                pass
        total = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
    print(f"\nquick start, cold (advrp2k eval --defense madry --eps 8/255), {os.cpu_count()} CPUs, "
          f"torch threads {__import__('torch').get_num_threads()}")
    for phase in PHASES:
        print(f"  {phase:<36} {TIMES[phase]:8.1f} s")
    print(f"  {'total':<36} {total:8.1f} s")
    print(f"  minor page faults {after.ru_minflt - before.ru_minflt:,}, kernel time "
          f"{after.ru_stime - before.ru_stime:.1f} s, user time {after.ru_utime - before.ru_utime:.1f} s")
    if COUNTER is not None:
        _print_floor()
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
