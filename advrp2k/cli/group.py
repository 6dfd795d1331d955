"""The ``advrp2k`` command group: library errors become one clear line and an exit status."""
from __future__ import annotations

import logging
import sys

import click

from advrp2k.core.errors import Advrp2kError, OutputError, TrainingInterrupted, UsageError
from advrp2k.plugins import registry as _registry

EXIT_USAGE = 2
EXIT_OUTPUT = 74  # sysexits.h EX_IOERR: an output location cannot be written (full, read-only, denied)


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
            from advrp2k.core.io import output_error, write_error_errnos

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
    from advrp2k.core import distributed

    prefix = f"[rank {distributed.rank()}] " if distributed.active() else ""
    click.echo(prefix + message, err=True)


@click.group(cls=Advrp2kGroup)
@click.version_option(package_name="advrp2k")
@click.option("-p", "plugin_modules", multiple=True, metavar="MODULE",
              help="Import a local, uninstalled plugin module (repeatable).")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
@click.pass_context
def cli(ctx, plugin_modules, verbose):
    """advrp2k: adversarial robustness benchmarks on RP2K retail products."""
    from advrp2k.core import distributed
    from advrp2k.core.allocator import keep_freed_memory

    keep_freed_memory()  # batch buffers are reused, not faulted in again every batch
    distributed.init_from_env()  # under torchrun: join its process group (a no-op otherwise)
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level if distributed.is_main() else logging.ERROR, format="%(levelname)s: %(message)s")
    sub = ctx.command.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
    if not getattr(sub, "needs_plugins", True) and not plugin_modules:
        return  # a command that declares it needs none (entries are plain JSON) starts without them
    failures = _registry.load_plugins(tuple(plugin_modules))
    for msg in failures.values():
        click.echo(f"Warning: {msg}", err=True)
