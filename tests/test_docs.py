"""The README is the front page and the docs hold the rest: short, linked, and not drifting."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_cli_reference_page_is_what_the_commands_say():
    """docs/cli.md is generated from the click commands; regenerate it when a command changes:
    python -m advrp2k.cli.reference > docs/cli.md"""
    from advrp2k.cli.reference import render

    page = ROOT / "docs" / "cli.md"
    assert page.read_text() == render()


def test_the_plugin_options_page_is_what_the_declarations_say():
    """docs/plugin-options.md is generated from the built-in plugins' ``options``; regenerate it:
    python -m advrp2k.cli.options_reference > docs/plugin-options.md"""
    from advrp2k.cli.options_reference import render

    assert (ROOT / "docs" / "plugin-options.md").read_text() == render()


def test_the_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file(page):
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
    missing = [link for link in links if "://" not in link and not (page.parent / link).exists()]
    assert missing == []


def test_the_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    pages = [p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")]
    assert [p for p in pages if p not in readme] == []
