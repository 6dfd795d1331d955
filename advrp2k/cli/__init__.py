"""The command line: option parsing and printing, no logic."""
from advrp2k.cli.app import cli, main

__all__ = ["cli", "main"]
