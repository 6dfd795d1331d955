"""Click parameter types and parsers shared by the commands."""
from __future__ import annotations

import ast

import click

from advrp2k.core.eps import parse_eps, parse_eps_list
from advrp2k.core.errors import UsageError


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
