"""Click parameter types and parsers shared by the commands."""
from __future__ import annotations

import ast
from pathlib import Path

import click

from advrp2k.core.eps import parse_eps, parse_eps_list
from advrp2k.core.errors import UsageError
from advrp2k.core.paths import RESULTS_DIR, results_home


def results_option(f):
    """``--leaderboard PATH``: the results folder (entries, per-example results, tables, site)."""
    return click.option("--leaderboard", type=click.Path(path_type=Path), default=results_home,
                        show_default=f"./{RESULTS_DIR} (or $ADVRP2K_RESULTS)",
                        help="Results folder; the repository's shipped board is written only when named, "
                             "e.g. --leaderboard leaderboard.")(f)


def threats_option(help_text: str):
    """``--threat NAME[,...]``: threat models of ``advrp2k.core.threat`` (linf the default), as a
    string for ``parse_threats``."""
    from advrp2k.core.threat import THREAT_MODELS

    return click.option("--threat", "threats", default="linf", show_default=True,
                        metavar="|".join(THREAT_MODELS) + "[,...]", help=help_text)


def results_argument(f):
    """``[LEADERBOARD]``: the results folder to read (default as ``--leaderboard``)."""
    return click.argument("leaderboard", type=click.Path(path_type=Path), default=results_home)(f)


class EpsType(click.ParamType):
    name = "EPS"

    def convert(self, value, param, ctx):
        try:
            eps = parse_eps(value)
        except UsageError as exc:
            self.fail(str(exc), param, ctx)
        note = off_grid_note(value, eps)
        if note:
            click.echo(f"note: {note}", err=True)
        return eps


def off_grid_note(raw, eps) -> str | None:
    """A float budget that is not a whole number of 255ths (``0.03`` is 7.65/255, not 8/255)."""
    if isinstance(raw, str) and "/" in raw:
        return None
    k = eps.value * 255
    if abs(k - round(k)) < 1e-6 or isinstance(raw, type(eps)):
        return None
    near = max(1, round(k))
    return (f"eps {raw} is {k:.2f}/255, not {near}/255 ({near / 255:.4f}); entries label it {eps.label} and it is "
            f"not the ranking's budget: write {near}/255 for that")


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
