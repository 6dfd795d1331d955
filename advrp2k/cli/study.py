"""``advrp2k study skus``: robustness against the number of SKUs, on seeded stand-ins."""
from __future__ import annotations

import click

from advrp2k.cli.group import cli
from advrp2k.cli.params import results_option
from advrp2k.core.errors import UsageError


@cli.group("study")
def study_group():
    """Studies that train and evaluate several models (synthetic stand-ins)."""


@study_group.command("skus")
@click.option("--skus", default="59,240,960,2388", show_default=True, help="Comma-separated SKU counts.")
@click.option("--per-sku", default="12,3", show_default=True, metavar="TRAIN,TEST",
              help="Images per SKU, the same at every count.")
@click.option("--image-size", type=click.IntRange(min=16, max=1024), default=16, show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@results_option
def skus_cmd(skus, per_sku, image_size, seed, device, leaderboard):
    """Train standard and Madry 8/255 models on stand-ins with a growing number of SKUs, evaluate
    each under the ranking suite, and write LEADERBOARD/studies/skus.{json,md,svg}.

    Every model and evaluation is cached and resumable: re-running reports finished ones from
    their entries. The stand-ins are synthetic: the study says how robustness scales with the
    number of fine-grained classes on them, not on RP2K.
    """
    from advrp2k.cli.progress import progress_factory
    from advrp2k.jobs.study import StudyPlan, run_study, table_markdown, write_study

    try:
        counts = tuple(int(v) for v in skus.split(","))
        train, test = (int(v) for v in per_sku.split(","))
    except ValueError:
        raise UsageError("--skus takes counts like 59,240,960,2388 and --per-sku TRAIN,TEST like 12,3") from None
    if min(counts) < 4 or train < 1 or test < 1:
        raise UsageError("every SKU count must be at least 4 (AutoAttack's targeted DLR loss reads the 4th-highest "
                         "logit), and --per-sku needs at least one train and one test image")
    plan = StudyPlan(skus=counts, per_sku=(train, test), image_size=image_size, seed=seed, device=device,
                     leaderboard=leaderboard, progress=progress_factory())
    study = run_study(plan)
    paths = write_study(study, leaderboard / "studies")
    click.echo(table_markdown(study))
    click.echo("wrote " + ", ".join(str(p) for p in paths))
