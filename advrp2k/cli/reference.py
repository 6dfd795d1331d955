"""The CLI reference page (``docs/cli.md``), rendered from the click commands themselves.

Regenerate it with ``python -m advrp2k.cli.reference > docs/cli.md``; a test fails when the
committed page differs from what the commands say, so it cannot drift.
"""
from __future__ import annotations

import click

from advrp2k.cli.app import cli


def _commands(group: click.Group, ctx: click.Context, prefix: str):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        path = f"{prefix} {name}"
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, click.Context(cmd, info_name=name, parent=ctx), path)


def _help(cmd: click.Command, path: str) -> str:
    parent = click.Context(cli, info_name="advrp2k")
    ctx = click.Context(cmd, info_name=path.removeprefix("advrp2k "), parent=parent,
                        terminal_width=100, max_content_width=100)
    return cmd.get_help(ctx)


def render() -> str:
    """The whole page: ``advrp2k --help``, then every command and subcommand's ``--help``."""
    root = click.Context(cli, info_name="advrp2k", terminal_width=100, max_content_width=100)
    parts = ["# Command-line reference", "",
             "Generated from the commands' own help by `python -m advrp2k.cli.reference > docs/cli.md`;",
             "a test keeps it equal to what `advrp2k ... --help` prints.", "",
             "## advrp2k", "", "```text", cli.get_help(root), "```", ""]
    for path, cmd in _commands(cli, root, "advrp2k"):
        parts += [f"## {path}", "", "```text", _help(cmd, path), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
