"""The subcommands of ``advrp2k``."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import click

from advrp2k.plugins import registry as _registry
from advrp2k.core.eps import parse_eps_list
from advrp2k.cli.group import cli
from advrp2k.cli.params import EpsListType, EpsType, parse_key_values
from advrp2k.cli.progress import _progress
from advrp2k.board.entry_text import format_entry
from advrp2k.core.errors import UsageError
from advrp2k.core.ranking_rule import RANKING_EPS_LABELS
from advrp2k.jobs.protocols import PROTOCOLS, get_protocol

if TYPE_CHECKING:
    from advrp2k.plugins.attack_spec import AttackSpec


#: The nested eps grid of ``eval --curve`` (eps 0 is the clean accuracy). The engine attacks only
#: survivors and starts each eps from the previous one's points, so it costs little more than 16/255.
CURVE_EPS = "1/255,2/255,3/255,4/255,6/255,8/255,12/255,16/255"


def _apply(f, opts):
    for opt in reversed(opts):
        f = opt(f)
    return f


def _data_options(f):
    """Options shared by every command that trains or evaluates (defaults from the protocol)."""
    return _apply(f, [
        click.option("--data", type=click.Path(path_type=Path), help="Your RP2K download (any of its three levels)."),
        click.option("--dataset", help="Dataset plugin; default rp2k with --data, else rp2k_synth (synthetic)."),
        click.option("--attributes", type=click.Path(path_type=Path),
                     help="Per-SKU attribute CSV (sku, product_type, shape, ...) for per-group results."),
        click.option("--protocol", default="quick", show_default=True, type=click.Choice(sorted(PROTOCOLS)),
                     help="Named defaults for arch, epochs, schedule and attack steps."),
        click.option("--arch", help="Architecture (advrp2k list archs), or rb:<RobustBench ImageNet Linf model>; "
                                    "default from the protocol."),
        click.option("--pretrained", type=click.Choice(["none", "imagenet"]), default="none", show_default=True,
                     help="Start from torchvision's ImageNet weights (resnet18/34/50) and fine-tune."),
        click.option("--model-dir", type=click.Path(path_type=Path),
                     help="Folder of pretrained weights (default $ADVRP2K_HOME/weights); nothing is downloaded."),
        click.option("--augment", type=click.Choice(["none", "paper"]), default="none", show_default=True,
                     help="Training augmentation: the RP2K paper's border, crop, perspective and brightness."),
        click.option("--epochs", type=click.IntRange(min=1), help="Training epochs; default from the protocol."),
        click.option("--image-size", type=click.IntRange(min=8), help="Square input size in pixels."),
        click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])),
        click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16"]),
                     help="Attack and training steps: auto is bf16 on CUDA, fp32 on a CPU; verdicts are always fp32."),
        click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model (GPU; minutes to compile)."),
        click.option("--seed", default=0, show_default=True, type=int),
    ])


def _job_options(f):
    """Options of train and eval: the data options plus the defense."""
    return _apply(_data_options(f), [
        click.option("--defense", default="standard", show_default=True,
                     help="Defense plugin name (advrp2k list defenses); standard is plain training."),
        click.option("--eps", type=EpsType(), help="The defense's training budget: k/255 or a float in (0, 1]."),
        click.option("--defense-arg", "defense_args", multiple=True, metavar="KEY=VALUE",
                     help="Option passed to the defense plugin (repeatable), e.g. steps=10."),
        click.option("--checkpoint", type=click.Path(path_type=Path), help="Use this trained model instead of training."),
    ])


def _make_job(data, dataset, attributes, protocol, arch, epochs, image_size, device, seed, precision="auto",
              compile_model=False, pretrained="none", model_dir=None, augment="none", defense="standard", eps=None,
              defense_args=(), checkpoint=None, **extra):
    from advrp2k.jobs.run import Job

    if data is not None and not data.exists():
        raise UsageError(f"--data {data} does not exist: pass the folder you unzipped RP2K into")
    if checkpoint is not None and not checkpoint.is_file():
        raise UsageError(f"--checkpoint {checkpoint} is not a file")
    proto = get_protocol(protocol).override(arch=arch, epochs=epochs, image_size=image_size)
    try:
        args = parse_key_values(defense_args)
    except click.BadParameter as exc:
        raise UsageError(f"--defense-arg: {exc.message}")
    return Job(defense=defense, eps=eps, defense_args=args, data=data, dataset=dataset, attributes=attributes,
               protocol=proto,
               checkpoint=checkpoint, device=device, seed=seed, precision=precision, compile=compile_model,
               pretrained=None if pretrained == "none" else pretrained, model_dir=model_dir, augment=augment,
               explicit={k: v for k, v in {"arch": arch, "image_size": image_size}.items() if v is not None},
               progress=_progress(), **extra)


@cli.command("eval")
@_job_options
@click.option("--attacks", default="pgd", show_default=True, help="Comma-separated attack plugins.")
@click.option("--attack-eps", type=EpsListType(), default=",".join(RANKING_EPS_LABELS), show_default=True,
              help="Budgets to evaluate at.")
@click.option("--attack-arg", "attack_args", multiple=True, metavar="NAME.KEY=VALUE",
              help="Option of one attack of the suite (repeatable), e.g. pgd.steps=100 or ta:MIFGSM.decay=0.9.")
@click.option("--n-examples", type=click.IntRange(min=1), help="Evaluate the first N test images only.")
@click.option("--batch-size", "batch_size_eval", type=click.IntRange(min=1),
              help="Examples in flight per attack step (default 128 on CPU, 512 on CUDA).")
@click.option("--curve", is_flag=True, help=f"Evaluate the robustness curve's eps grid ({CURVE_EPS}) instead of --attack-eps.")
@click.option("--cascade", is_flag=True, help="Attack only survivors of earlier attacks (cheaper; no per-attack numbers).")
@click.option("--restart", is_flag=True, help="Discard saved per-example results instead of resuming from them.")
@click.option("--no-escalate", is_flag=True, help="Report flags only; do not run the attacks they call for.")
@click.option("--leaderboard", type=click.Path(path_type=Path), default=Path("leaderboard"), show_default=True)
@click.pass_context
def eval_cmd(ctx, attacks, attack_eps, attack_args, n_examples, batch_size_eval, curve, cascade, restart, no_escalate,
             leaderboard, **kw):
    """Train (or reuse) a defended model, evaluate it, write a leaderboard entry."""
    from advrp2k.jobs.run import default_attacks, run_eval
    from advrp2k.plugins.attack_spec import AttackSpec

    if curve:
        if ctx.get_parameter_source("attack_eps") is not click.core.ParameterSource.DEFAULT:
            raise UsageError("--curve evaluates its own eps grid: leave out --attack-eps")
        attack_eps = parse_eps_list(CURVE_EPS)

    job = _make_job(**kw, attack_eps=attack_eps, n_examples=n_examples, leaderboard=leaderboard,
                    per_attack=not cascade, restart=restart, batch_size_eval=batch_size_eval, escalate=not no_escalate)
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    for name in names:
        _registry.ATTACKS.info(name)
    pgd_default = default_attacks(job.protocol)[0]
    job.attacks = apply_attack_args([pgd_default if n == "pgd" else AttackSpec(n) for n in names], attack_args)
    out = run_eval(job)
    if out["entry"] is None:
        return  # under torchrun only the main process writes and prints
    click.echo(format_entry(out["entry"]))
    click.echo(f"\nwrote {out['path']}")


def apply_attack_args(specs: list[AttackSpec], pairs) -> list[AttackSpec]:
    """``NAME.KEY=VALUE`` options onto the suite's attacks (values parsed as literals, never evaluated).

    Raises:
        UsageError: a malformed pair, or an attack that is not in the suite.
    """
    by_name = {s.name: s for s in specs}
    for pair in pairs:
        target, sep, _ = pair.partition("=")
        name, dot, key = target.rpartition(".")
        if not sep or not dot or not name or not key:
            raise UsageError(f"--attack-arg {pair!r} is not NAME.KEY=VALUE (e.g. pgd.steps=100)")
        if name not in by_name:
            raise UsageError(f"--attack-arg {pair!r} names attack {name!r}, which is not in --attacks "
                             f"({', '.join(by_name)})")
        value = parse_key_values([f"{key}={pair.split('=', 1)[1]}"])
        by_name[name].options = {**by_name[name].options, **value}
    return specs


@cli.command("train")
@_job_options
def train_cmd(**kw):
    """Train (or reuse) a defended model without evaluating it; print the checkpoint path."""
    from advrp2k.core.io import check_output_dir
    from advrp2k.models.factory import resolve_device
    from advrp2k.core.paths import cache_home
    from advrp2k.jobs.model_store import defense_for, get_model
    from advrp2k.jobs.run import prepare

    job = _make_job(**kw)
    defense_for(job)
    check_output_dir(cache_home(), "the cache folder (ADVRP2K_HOME)")
    prep = prepare(job)
    from advrp2k.core import distributed

    loaded = get_model(job, prep, resolve_device(job.device))
    state = "reused cached model" if loaded.reused else f"trained in {loaded.train_wall:.0f} s"
    if distributed.is_main():
        click.echo(f"{state}: {loaded.path}")


@cli.command("list")
@click.argument("kind", required=False, type=click.Choice(sorted(_registry.REGISTRIES)))
def list_cmd(kind):
    """List registered plugins (datasets, archs, attacks, defenses)."""
    for name, reg in _registry.REGISTRIES.items():
        if kind in (None, name):
            shown = [n + (f" ({lib})" if (lib := getattr(reg.get(n), "library", "")) else "") for n in reg.names()]
            click.echo(f"{name}: {', '.join(shown)}")


@cli.group("reproduce")
def reproduce_group():
    """Reproduce results of the RP2K paper."""


@reproduce_group.command("table5")
@_data_options
@click.option("--n-examples", type=click.IntRange(min=1), help="Evaluate the first N test images only.")
@click.option("--leaderboard", type=click.Path(path_type=Path), default=Path("leaderboard"), show_default=True)
def table5_cmd(n_examples, leaderboard, **kw):
    """Train (or reuse) the regular, Madry 4/255 and Madry 8/255 models; evaluate; compare with the paper.

    Writes LEADERBOARD/table5.json, LEADERBOARD/table5.md and one entry per row. Re-running
    resumes: finished training and finished rows are reused.
    """
    from advrp2k.jobs.table5 import reproduce

    job = _make_job(**kw, n_examples=n_examples, leaderboard=leaderboard)
    if not reproduce(job, log=lambda m: click.echo(m, err=True)):
        return  # under torchrun only the main process writes and prints
    click.echo((leaderboard / "table5.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {leaderboard / 'table5.json'} and {leaderboard / 'table5.md'}")


@reproduce_group.command("table3")
@_data_options
@click.option("--robust-backbone", default="Salman2020Do_R18", show_default=True,
              help="RobustBench ImageNet Linf model for the robust-pretraining rows (weights under --model-dir).")
@click.option("--n-examples", type=click.IntRange(min=1), help="Evaluate the first N test images only.")
@click.option("--leaderboard", type=click.Path(path_type=Path), default=Path("leaderboard"), show_default=True)
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


@cli.group("plugins", invoke_without_command=True)
@click.pass_context
def plugins_group(ctx):
    """List every plugin with the distribution and version that provides it."""
    if ctx.invoked_subcommand is not None:
        return
    from advrp2k.plugins.options import declared_options

    for kind, reg in _registry.REGISTRIES.items():
        for name in reg.names():
            info = reg.info(name)
            click.echo(f"{kind[:-1]:<8} {name:<14} {info.distribution} {info.version}  ({info.module})")
            if kind in ("attacks", "defenses"):
                for key, opt in declared_options(info.obj).items():
                    click.echo(f"{'':<23} {key}: {opt.describe()}")
    for msg in _registry.load_failures().values():
        click.echo(f"broken   {msg}")


@plugins_group.command("check")
@click.argument("name")
@click.option("--eps", default="8/255", show_default=True, help="Training budget passed to the defense.")
def plugins_check_cmd(name, eps):
    """Run the plugin contract checks on defense NAME (tiny data, seconds on a CPU)."""
    from advrp2k.testing import check_defense

    _registry.DEFENSES.info(name)
    results = check_defense(name, eps)
    for r in results:
        click.echo(f"{'PASS' if r.passed else 'FAIL'}  {r.check}" + ("" if r.passed else f": {r.detail}"))
    if not all(r.passed for r in results):
        raise SystemExit(1)


@cli.group("leaderboard")
def leaderboard_group():
    """Validate entries and build the leaderboard."""


leaderboard_group.needs_plugins = False  # entries are plain JSON: no plugin (nor torch) is loaded


@leaderboard_group.command("validate")
@click.argument("leaderboard", type=click.Path(path_type=Path), default=Path("leaderboard"))
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
@click.option("--leaderboard", type=click.Path(path_type=Path), default=Path("leaderboard"), show_default=True)
def submit_cmd(name, authors, link, venue, leaderboard, **kw):
    """Evaluate under the leaderboard's ranking protocol and write the validated entry to send as a pull request.

    The ranking protocol: PGD-20 and AutoAttack (standard) at 4/255 and 8/255 on the whole test
    split; robust accuracy is the worst case per example over both.
    """
    import datetime

    from advrp2k import _version
    from advrp2k.core.errors import EntryValidationError
    from advrp2k.board.entries import validate_hand_fields
    from advrp2k.jobs.run import run_eval
    from advrp2k.jobs.run import ranking_suite

    if click.get_current_context().get_parameter_source("defense") is click.core.ParameterSource.DEFAULT:
        raise UsageError("submit needs --defense NAME: the defense plugin being submitted (see 'advrp2k list defenses')")
    fields = {"name": name, "authors": authors, "link": link, **({"venue": venue} if venue else {})}
    try:
        validate_hand_fields(fields)  # before any work: nothing is evaluated or written on refusal
    except EntryValidationError as exc:
        raise UsageError(f"submission refused: {exc}")
    fields["submitted"] = {"tool": "advrp2k submit", "advrp2k_version": _version.__version__,
                           "date": datetime.date.today().isoformat()}
    job = _make_job(**kw, leaderboard=leaderboard, hand_fields=fields)
    job.attacks = ranking_suite()  # exactly the suite the leaderboard ranks by
    out = run_eval(job)
    if out["entry"] is None:
        return  # under torchrun only the main process writes and prints
    click.echo(format_entry(out["entry"]))
    click.echo(f"\nwrote {out['path']}\nSubmit it: open a pull request that adds this file to the advrp2k leaderboard.")


@leaderboard_group.command("build")
@click.argument("leaderboard", type=click.Path(path_type=Path), default=Path("leaderboard"))
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
