"""Command line: parses options and calls importable functions; only this module prints."""
from __future__ import annotations

import ast
import logging
import sys

import click

from . import _registry
from ._eps import parse_eps, parse_eps_list
from .errors import Advrp2kError, OutputError, UsageError
from .training import TrainingInterrupted

EXIT_USAGE = 2
EXIT_OUTPUT = 74  # sysexits.h EX_IOERR: an output location cannot be written (full, read-only, denied)


def _progress():
    """tqdm on a terminal-ish stderr; silent when ADVRP2K_NO_PROGRESS=1."""
    import os

    from . import distributed

    if os.environ.get("ADVRP2K_NO_PROGRESS") == "1" or not distributed.is_main():
        return None  # under torchrun only the main process shows progress
    from tqdm.auto import tqdm

    def factory(iterable=None, **kw):
        kw.setdefault("dynamic_ncols", True)
        kw.setdefault("leave", False)
        kw.setdefault("mininterval", 1.0)
        return tqdm(iterable, file=sys.stderr, **kw)

    return factory


class EpsType(click.ParamType):
    name = "EPS"

    def convert(self, value, param, ctx):
        try:
            return parse_eps(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


class EpsListType(click.ParamType):
    name = "EPS[,EPS...]"

    def convert(self, value, param, ctx):
        try:
            return parse_eps_list(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)


def parse_key_values(pairs) -> dict:
    """``key=value`` pairs; values are Python literals when they parse as one (no eval), else strings."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not key=value (e.g. steps=10)")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = raw.strip()
    return out


class Advrp2kGroup(click.Group):
    """Turns library errors into one clear line and an exit status, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            _error(f"Error: {exc}")
            sys.exit(EXIT_USAGE)
        except TrainingInterrupted as exc:
            _error(f"Interrupted: {exc}")
            sys.exit(130)
        except OutputError as exc:
            _error(f"Error: {exc}")
            sys.exit(EXIT_OUTPUT)
        except Advrp2kError as exc:
            _error(f"Error: {exc}")
            sys.exit(1)
        except OSError as exc:
            from ._io import output_error, write_error_errnos

            if exc.errno not in write_error_errnos():
                raise
            _error(f"Error: {output_error(exc.filename or '(a cache or output file)', exc)}")
            sys.exit(EXIT_OUTPUT)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


def _error(message: str) -> None:
    """One line on stderr; under torchrun, prefixed with the rank that failed (torchrun then stops
    the other processes)."""
    from . import distributed

    prefix = f"[rank {distributed.rank()}] " if distributed.active() else ""
    click.echo(prefix + message, err=True)


@click.group(cls=Advrp2kGroup)
@click.version_option(package_name="advrp2k")
@click.option("-p", "plugin_modules", multiple=True, metavar="MODULE",
              help="Import a local, uninstalled plugin module (repeatable).")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def cli(plugin_modules, verbose):
    """advrp2k: adversarial robustness benchmarks on RP2K retail products."""
    from . import distributed

    distributed.init_from_env()  # under torchrun: join its process group (a no-op otherwise)
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level if distributed.is_main() else logging.ERROR, format="%(levelname)s: %(message)s")
    failures = _registry.load_plugins(tuple(plugin_modules))
    for msg in failures.values():
        click.echo(f"Warning: {msg}", err=True)


from . import cli_analysis, cli_commands, cli_data  # noqa: E402,F401  (register the subcommands)


def main():
    from . import distributed

    code = 1
    try:
        cli(prog_name="advrp2k", standalone_mode=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise
    finally:
        distributed.shutdown(clean=code == 0)
