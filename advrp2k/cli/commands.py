"""``advrp2k eval``, ``train``, ``list`` and ``plugins``."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from advrp2k.board.entry_text import format_entry
from advrp2k.cli.group import cli
from advrp2k.cli.job_options import CURVE_EPS, _job_options, _make_job
from advrp2k.cli.params import parse_key_values, results_option, threats_option
from advrp2k.core.eps import parse_eps_list
from advrp2k.core.errors import UsageError
from advrp2k.core.threat import THREAT_MODELS
from advrp2k.plugins import registry as _registry

if TYPE_CHECKING:
    from advrp2k.plugins.attack_spec import AttackSpec


# The eval help is read from the threat models' catalogue, so it cannot drift from the defaults.
_DEFAULT_SUITES = "; ".join(f"{t.name}: {','.join(t.default_attacks)}" for t in THREAT_MODELS.values())
_THREAT_TITLES = "; ".join(f"{t.name} ({t.title})" for t in THREAT_MODELS.values())
_DEFAULT_BUDGETS = "; ".join(
    f"{t.name} {','.join(t.budgets)}" + (f" ({','.join(t.large_image_budgets)} at 224 px)" if t.large_image_budgets else "")
    for t in THREAT_MODELS.values())


@cli.command("eval")
@_job_options
@click.option("--attacks", default=None, help="Comma-separated attack plugins [default: the threat model's: "
                                             + _DEFAULT_SUITES + "].")
@threats_option("Threat model(s): " + _THREAT_TITLES + "; several run one after the other, each its own entry "
                "and board.")
@click.option("--attack-eps", default=None, metavar="BUDGETS",
              help="Budgets to evaluate at [default: the threat model's: " + _DEFAULT_BUDGETS + "].")
@click.option("--attack-arg", "attack_args", multiple=True, metavar="NAME.KEY=VALUE",
              help="Option of one attack of the suite (repeatable), e.g. pgd.steps=100 or ta:MIFGSM.decay=0.9.")
@click.option("--n-examples", type=click.IntRange(min=1), help="Evaluate the first N test images only.")
@click.option("--batch-size", "batch_size_eval", type=click.IntRange(min=1),
              help="Examples in flight per attack step (default 128 on CPU, 512 on CUDA).")
@click.option("--curve", is_flag=True, help=f"Evaluate the robustness curve's eps grid ({CURVE_EPS}) instead of --attack-eps.")
@click.option("--cascade", is_flag=True, help="Attack only survivors of earlier attacks (cheaper; no per-attack numbers).")
@click.option("--restart", is_flag=True, help="Discard saved per-example results instead of resuming from them.")
@click.option("--no-escalate", is_flag=True, help="Report flags only; do not run the attacks they call for.")
@results_option
@click.option("--force", is_flag=True, help="Replace an entry from a stronger evaluation (more attacks, eps or images).")
@click.option("--model", "model_spec", metavar="FILE.py:FACTORY",
              help="Evaluate your own model: FACTORY(num_classes=N) in FILE builds it (FILE is imported: it runs).")
@click.option("--weights", type=click.Path(path_type=Path),
              help="Weights for --model or --arch: safetensors, or a .pt/.pth state dict (never a pickled model).")
@click.option("--classes", "classes_from", metavar="dataset|FILE",
              help="Your model's output order: dataset (the data's, 'advrp2k data classes') or a file of SKU names.")
@click.option("--name", help="Your model's name in its entry id (External_<name>); default the factory or arch.")
@click.pass_context
def eval_cmd(ctx, threats, attacks, attack_eps, attack_args, n_examples, batch_size_eval, curve, cascade, restart,
             no_escalate, leaderboard, force, model_spec, weights, classes_from, name, **kw):
    """Train (or reuse) a defended model, evaluate it, write a leaderboard entry (one per threat model)."""
    from advrp2k.core.threat import parse_threats

    chosen = parse_threats(threats)
    if attack_eps is not None and len(chosen) > 1:
        raise UsageError("--attack-eps gives one threat model's budgets: pass one --threat with it, or leave it out "
                         "(each threat model then uses its own budgets)")
    if curve:
        if attack_eps is not None:
            raise UsageError("--curve evaluates its own eps grid: leave out --attack-eps")
        if [t.name for t in chosen] != ["linf"]:
            raise UsageError("--curve is the l_inf eps grid: use it with --threat linf")
        attack_eps = CURVE_EPS
    suites = {t.name: _suite_names(attacks, t) for t in chosen}
    for pair in attack_args:  # each names an attack of some threat model's suite (applied to that one)
        target = _attack_named(pair)
        if target and not any(target in names for names in suites.values()):
            listed = "; ".join(f"{t}: {', '.join(n)}" for t, n in suites.items())
            raise UsageError(f"--attack-arg {pair!r} names attack {target!r}, which is in no suite of this run ({listed}): "
                             f"name it in --attacks too")
    for position, threat in enumerate(chosen):
        if position:
            click.echo("")
        mine = [p for p in attack_args if _attack_named(p) in suites[threat.name]] \
            if len(chosen) > 1 else attack_args
        budgets = (parse_eps_list(attack_eps) if threat.name == "linf" else threat.parse_budgets(attack_eps)) \
            if attack_eps is not None else None
        _eval_one(ctx, threat.name, budgets, attacks, mine, n_examples, batch_size_eval, cascade, restart,
                  no_escalate, leaderboard, force, model_spec, weights, classes_from, name, kw)


def _eval_one(ctx, threat, attack_eps, attacks, attack_args, n_examples, batch_size_eval, cascade, restart,
              no_escalate, leaderboard, force, model_spec, weights, classes_from, name, kw) -> None:
    """One threat model's evaluation: its entry written and printed."""
    from advrp2k.jobs.job import attack_specs
    from advrp2k.jobs.run import run_eval

    job = _make_job(**kw, attack_eps=attack_eps, n_examples=n_examples, leaderboard=leaderboard,
                    per_attack=not cascade, restart=restart, batch_size_eval=batch_size_eval, escalate=not no_escalate,
                    force=force)
    job.threat = threat
    if model_spec or weights:
        _give_model(ctx, job, model_spec, weights, classes_from, name)
    elif classes_from or name:
        raise UsageError("--classes and --name describe your own model: pass them with --model or --weights")
    names = _suite_names(attacks, THREAT_MODELS[threat])
    job.attacks = apply_attack_args(attack_specs(names, job.protocol, threat), attack_args)
    out = run_eval(job)
    if out["entry"] is None:
        return  # under torchrun only the main process writes and prints
    click.echo(format_entry(out["entry"]))
    if out.get("reused"):
        click.echo(f"\nthis evaluation had finished before: reported from {out['path']} and its per-example "
                   f"results, nothing attacked again (--restart evaluates afresh)")
    else:
        click.echo(f"\nwrote {out['path']}")


def _attack_named(pair: str) -> str:
    """The attack an ``--attack-arg NAME.KEY=VALUE`` names (``""`` when malformed)."""
    return pair.partition("=")[0].rpartition(".")[0]


def _suite_names(attacks: str | None, threat) -> list[str]:
    """``--attacks`` as names, or the threat model's default suite."""
    return [a.strip() for a in attacks.split(",") if a.strip()] if attacks else list(threat.default_attacks)


def _give_model(ctx, job, model_spec, weights, classes_from, name) -> None:
    """Point the job at the user's own model (``--model``/``--weights``): it is evaluated as given,
    under the ``external`` defense, and nothing is trained."""
    from advrp2k.models.external import given_from_files, read_class_file

    source = click.core.ParameterSource
    if job.checkpoint is not None:
        raise UsageError("--checkpoint is advrp2k's own trained model; --model/--weights bring yours: pass one or the other")
    if ctx.get_parameter_source("defense") is not source.DEFAULT and job.defense != "external":
        raise UsageError(f"--defense {job.defense} trains a model; --model/--weights evaluate yours as given "
                         f"(its entry says defense external): leave out --defense")
    for option in ("epochs", "augment", "pretrained"):
        if ctx.get_parameter_source(option) is not source.DEFAULT:
            raise UsageError(f"--{option} configures training; --model/--weights evaluate your model as given")
    classes = None if classes_from is None else "dataset" if classes_from == "dataset" else read_class_file(classes_from)
    job.defense = "external"
    job.given = given_from_files(model_spec, weights, job.protocol.arch, classes, name)


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
    from advrp2k.jobs.run import load_job_data

    job = _make_job(**kw)
    defense_for(job)
    check_output_dir(cache_home(), "the cache folder (ADVRP2K_HOME)")
    prep = load_job_data(job)
    from advrp2k.core import distributed

    loaded = get_model(job, prep, resolve_device(job.device))
    state = "reused cached model" if loaded.reused else f"trained in {loaded.train_wall:.0f} s"
    if distributed.is_main():
        click.echo(f"{state}: {loaded.path}")


@cli.command("list")
@click.argument("kind", required=False, type=click.Choice(sorted(_registry.REGISTRIES)))
def list_cmd(kind):
    """List registered plugins (datasets, archs, attacks, defenses)."""
    from advrp2k.plugins.listing import plugins_to_list

    listed, failures = plugins_to_list()
    for name in _registry.REGISTRIES:
        if kind in (None, name):
            here = sorted((p for p in listed if p.kind == name), key=lambda p: p.name)
            click.echo(f"{name}: {', '.join(p.name + (f' ({p.library})' if p.library else '') for p in here)}")
            if name == "archs":  # built from a prefix, not registered one by one
                click.echo("  also: timm:<name> (any timm architecture), rb:<RobustBench ImageNet Linf model>")
            if name == "attacks":
                click.echo("  by threat model (--threat): " + _attacks_by_threat(here))
    for msg in failures.values():
        click.echo(f"Warning: {msg}", err=True)


list_cmd.needs_plugins = False  # read from the plugins' sources: no torch (plugins_to_list)


def _attacks_by_threat(attacks) -> str:
    """``linf: a, b; l2: c`` — which attacks serve which threat model."""
    served = {t: [p.name for p in attacks if t in p.threats] for t in THREAT_MODELS}
    return "; ".join(f"{t}: {', '.join(names) if len(names) <= 8 else ', '.join(names[:8]) + f' and {len(names) - 8} more'}"
                     for t, names in served.items())


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
