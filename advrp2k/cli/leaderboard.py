"""``advrp2k leaderboard validate``/``build`` and ``advrp2k submit``."""
from __future__ import annotations

from pathlib import Path

import click

from advrp2k.board.entry_text import format_entry
from advrp2k.cli.group import cli
from advrp2k.cli.job_options import _job_options, _make_job
from advrp2k.cli.params import results_argument, results_option, threats_option
from advrp2k.core.errors import UsageError


@cli.group("leaderboard")
def leaderboard_group():
    """Validate entries and build the leaderboard."""


leaderboard_group.needs_plugins = False  # entries are plain JSON: no plugin (nor torch) is loaded


@leaderboard_group.command("validate")
@results_argument
def validate_cmd(leaderboard):
    """Check every entry under LEADERBOARD/entries against the schema and cross-field rules."""
    from advrp2k.board.entries import load_entries

    if not (leaderboard / "entries").is_dir():
        raise UsageError(f"{leaderboard}/entries does not exist: pass the leaderboard folder")
    entries, problems = load_entries(leaderboard)
    for p in problems:
        click.echo(p)
    click.echo(f"{len(entries)} valid entries, {len(problems)} problems")
    if problems:
        raise SystemExit(1)


@cli.command("submit")
@_job_options
@click.option("--name", required=True, help="Display name of the defense.")
@click.option("--authors", required=True)
@click.option("--link", required=True, help="https:// link to the paper or code.")
@click.option("--venue", default=None)
@threats_option("Threat model(s) to submit under (docs/threat-models.md): each runs its own ranking protocol and "
                "writes its own entry.")
@results_option
def submit_cmd(name, authors, link, venue, threats, leaderboard, **kw):
    """Evaluate under the leaderboard's ranking protocol and write the validated entry to send as a pull request.

    The ranking protocol of each threat model asked for (docs/threat-models.md); for linf, the
    default: PGD-20 and AutoAttack (standard) at 4/255 and 8/255 on the whole test split, robust
    accuracy the worst case per example over both.
    """
    import datetime

    from advrp2k import _version
    from advrp2k.core.errors import EntryValidationError
    from advrp2k.core.threat import parse_threats
    from advrp2k.board.entries import validate_hand_fields

    if click.get_current_context().get_parameter_source("defense") is click.core.ParameterSource.DEFAULT:
        raise UsageError("submit needs --defense NAME: the defense plugin being submitted (see 'advrp2k list defenses')")
    chosen = parse_threats(threats)  # before any work, like the hand fields
    fields = {"name": name, "authors": authors, "link": link, **({"venue": venue} if venue else {})}
    try:
        validate_hand_fields(fields)  # before any work: nothing is evaluated or written on refusal
    except EntryValidationError as exc:
        raise UsageError(f"submission refused: {exc}")
    fields["submitted"] = {"tool": "advrp2k submit", "advrp2k_version": _version.__version__,
                           "date": datetime.date.today().isoformat()}
    for position, threat in enumerate(chosen):
        if position:
            click.echo("")
        _submit_one(threat.name, fields, leaderboard, kw)


def _submit_one(threat: str, fields: dict, leaderboard, kw: dict) -> None:
    """One threat model's ranking protocol: its entry written and printed."""
    from advrp2k.jobs.run import ranking_suite, run_eval

    job = _make_job(**kw, leaderboard=leaderboard, hand_fields=dict(fields))
    job.threat = threat
    job.attacks = ranking_suite(threat)  # exactly the suite the leaderboard ranks this threat model by
    out = run_eval(job)
    if out["entry"] is None:
        return  # under torchrun only the main process writes and prints
    click.echo(format_entry(out["entry"]))
    click.echo(f"\nwrote {out['path']}\nSubmit it: open a pull request that adds this file to the advrp2k leaderboard.")


@leaderboard_group.command("build")
@results_argument
@click.option("--out", type=click.Path(path_type=Path), help="Site folder (default LEADERBOARD/site).")
def build_cmd(leaderboard, out):
    """Generate LEADERBOARD/leaderboard.json and the static site from the entries."""
    from advrp2k.core.io import check_output_dir
    from advrp2k.board.site import build_site

    if not (leaderboard / "entries").is_dir():
        raise UsageError(f"{leaderboard}/entries does not exist: run 'advrp2k eval' first or pass the leaderboard folder")
    check_output_dir(leaderboard, "LEADERBOARD")
    check_output_dir(out or leaderboard / "site", "--out")
    report = build_site(leaderboard, out)
    for p in report["problems"]:
        click.echo(f"skipped invalid entry: {p}", err=True)
    click.echo(f"built {report['site']}/index.html from {report['entries']} entries")
