"""``advrp2k reproduce table5`` and ``table3``: the paper's tables, measured."""
from __future__ import annotations


import click

from advrp2k.cli.group import cli
from advrp2k.cli.job_options import _data_options, _make_job
from advrp2k.cli.params import results_option


@cli.group("reproduce")
def reproduce_group():
    """Reproduce results of the RP2K paper."""


@reproduce_group.command("table5")
@_data_options
@click.option("--n-examples", type=click.IntRange(min=1), help="Evaluate the first N test images only.")
@results_option
def table5_cmd(n_examples, leaderboard, **kw):
    """Train (or reuse) the regular, Madry 4/255 and Madry 8/255 models; evaluate; compare with the paper.

    Writes LEADERBOARD/table5.json, LEADERBOARD/table5.md and one entry per row. Re-running
    resumes: finished training and finished rows are reused.
    """
    from advrp2k.jobs.table5 import reproduce

    job = _make_job(**kw, n_examples=n_examples, leaderboard=leaderboard)
    click.echo("reproduce table5: 3 rows (regular, Madry 4/255, Madry 8/255). Each trains its model unless the "
               "cache holds it, and reuses an entry only if it was computed from that very checkpoint: a fresh "
               "clone trains all three. Before training, the plan below times two training steps of each here.",
               err=True)
    if not reproduce(job, log=lambda m: click.echo(m, err=True)):
        return  # under torchrun only the main process writes and prints
    click.echo((leaderboard / "table5.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {leaderboard / 'table5.json'} and {leaderboard / 'table5.md'}")


@reproduce_group.command("table3")
@_data_options
@click.option("--robust-backbone", default="Salman2020Do_R18", show_default=True,
              help="RobustBench ImageNet Linf model for the robust-pretraining rows (weights under --model-dir).")
@click.option("--n-examples", type=click.IntRange(min=1), help="Evaluate the first N test images only.")
@results_option
def table3_cmd(robust_backbone, n_examples, leaderboard, **kw):
    """The paper's Table 3 (scratch / ImageNet-pretrained, without and with its augmentation), extended
    with a robust backbone and with Madry training; rows whose weights are missing are reported, not run.

    Writes LEADERBOARD/table3.json, LEADERBOARD/table3.md and one entry per row that ran.
    """
    from advrp2k.jobs.table3 import reproduce

    kw.pop("augment", None)
    kw.pop("pretrained", None)
    job = _make_job(**kw, n_examples=n_examples, leaderboard=leaderboard)
    if not reproduce(job, robust_backbone, log=lambda m: click.echo(m, err=True)):
        return
    click.echo((leaderboard / "table3.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {leaderboard / 'table3.json'} and {leaderboard / 'table3.md'}")
