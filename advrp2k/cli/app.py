"""The program: the command group with every subcommand attached."""
from __future__ import annotations

from advrp2k.cli import analysis, commands, data, leaderboard, reproduce, study  # noqa: F401  (their decorators attach the subcommands)
from advrp2k.cli.group import cli


def main():
    from advrp2k.core import distributed

    code = 1
    try:
        cli(prog_name="advrp2k", standalone_mode=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise
    finally:
        distributed.shutdown(clean=code == 0)
