"""The subcommands of ``advrp2k``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from . import _registry
from .cli import EpsListType, EpsType, _progress, cli, parse_key_values
from .errors import UsageError
from .evaluator import AttackSpec
from .protocols import PROTOCOLS, get_protocol


def _job_options(f):
    """Options shared by train and eval (defaults from the protocol)."""
    opts = [
        click.option("--defense", required=True, help="Defense plugin name (advrp2k list defenses)."),
        click.option("--eps", type=EpsType(), help="The defense's training budget: k/255 or a float in (0, 1]."),
        click.option("--defense-arg", "defense_args", multiple=True, metavar="KEY=VALUE",
                     help="Option passed to the defense plugin (repeatable), e.g. steps=10."),
        click.option("--data", type=click.Path(path_type=Path), help="Your RP2K download (any of its three levels)."),
        click.option("--dataset", help="Dataset plugin; default rp2k with --data, else rp2k_synth (synthetic)."),
        click.option("--protocol", default="quick", show_default=True, type=click.Choice(sorted(PROTOCOLS)),
                     help="Named defaults for arch, epochs, schedule and attack steps."),
        click.option("--arch", help="Architecture (advrp2k list archs); default from the protocol."),
        click.option("--epochs", type=click.IntRange(min=1), help="Training epochs; default from the protocol."),
        click.option("--image-size", type=click.IntRange(min=8), help="Square input size in pixels."),
        click.option("--checkpoint", type=click.Path(path_type=Path), help="Use this trained model instead of training."),
        click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])),
        click.option("--seed", default=0, show_default=True, type=int),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _make_job(defense, eps, defense_args, data, dataset, protocol, arch, epochs, image_size, checkpoint, device,
              seed, **extra):
    from .pipeline import Job

    if data is not None and not data.exists():
        raise UsageError(f"--data {data} does not exist: pass the folder you unzipped RP2K into")
    if checkpoint is not None and not checkpoint.is_file():
        raise UsageError(f"--checkpoint {checkpoint} is not a file")
    proto = get_protocol(protocol).override(arch=arch, epochs=epochs, image_size=image_size)
    try:
        args = parse_key_values(defense_args)
    except click.BadParameter as exc:
        raise UsageError(f"--defense-arg: {exc.message}")
    return Job(defense=defense, eps=eps, defense_args=args, data=data, dataset=dataset, protocol=proto,
               checkpoint=checkpoint, device=device, seed=seed, progress=_progress(), **extra)


@cli.command("eval")
@_job_options
@click.option("--attacks", default="pgd", show_default=True, help="Comma-separated attack plugins.")
@click.option("--attack-eps", type=EpsListType(), default="4/255,8/255", show_default=True,
              help="Budgets to evaluate at.")
@click.option("--n-examples", type=click.IntRange(min=1), help="Evaluate the first N test images only.")
@click.option("--leaderboard", type=click.Path(path_type=Path), default=Path("leaderboard"), show_default=True)
def eval_cmd(attacks, attack_eps, n_examples, leaderboard, **kw):
    """Train (or reuse) a defended model, evaluate it, write a leaderboard entry."""
    from .pipeline import default_attacks, run_eval

    job = _make_job(**kw, attack_eps=attack_eps, n_examples=n_examples, leaderboard=leaderboard)
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    for name in names:
        _registry.ATTACKS.info(name)
    pgd_default = default_attacks(job.protocol)[0]
    job.attacks = [pgd_default if n == "pgd" else AttackSpec(n) for n in names]
    out = run_eval(job)
    click.echo(format_entry(out["entry"]))
    click.echo(f"\nwrote {out['path']}")


def format_entry(entry: dict) -> str:
    """The table printed after an evaluation."""
    lines = [f"{entry['model_id']}  ({entry['data']['description']})",
             f"  defense {entry['defense']}" + (f" at eps {entry['train_eps_label']}" if entry.get('train_eps_label') else "")
             + f", arch {entry['arch']}, {entry['n_examples']} test images",
             "", f"  {'metric':<28}{'accuracy':>10}", f"  {'-' * 38}",
             f"  {'clean top-1':<28}{entry['clean_acc']:>9.2%}", f"  {'clean top-5':<28}{entry['top5_acc']:>9.2%}"]
    names = "+".join(sorted({a['name'] for a in entry['attacks']}))
    for label, acc in entry["robust_acc"].items():
        lines.append(f"  {'robust ' + names + ' @ ' + label:<28}{acc:>9.2%}")
    for flag in entry.get("flags", []):
        lines.append(f"  FLAG evaluation potentially unreliable: {flag['check']}: {flag['detail']}")
    if entry.get("synthetic"):
        lines.append("  (synthetic data: these numbers are not RP2K results)")
    return "\n".join(lines)


@cli.command("train")
@_job_options
def train_cmd(**kw):
    """Train (or reuse) a defended model without evaluating it; print the checkpoint path."""
    from .models import resolve_device
    from .pipeline import _defense, get_model, prepare

    job = _make_job(**kw)
    _defense(job)
    prep = prepare(job)
    _, path, record, wall = get_model(job, prep, resolve_device(job.device))
    state = "reused cached model" if wall is None else f"trained in {wall:.0f} s"
    click.echo(f"{state}: {path}")


@cli.command("list")
@click.argument("kind", required=False, type=click.Choice(sorted(_registry.REGISTRIES)))
def list_cmd(kind):
    """List registered plugins (datasets, archs, attacks, defenses)."""
    for name, reg in _registry.REGISTRIES.items():
        if kind in (None, name):
            click.echo(f"{name}: {', '.join(reg.names())}")


@cli.group("data")
def data_group():
    """Inspect datasets."""


@data_group.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a summary.")
@click.option("--no-cache", is_flag=True, help="Decode everything again even if a scan is cached.")
def inspect_cmd(path, as_json, no_cache):
    """Decode every image under PATH and report what the loader will use."""
    from .data import scan_rp2k

    if not path.exists():
        raise UsageError(f"{path} does not exist: pass the folder you unzipped RP2K into")
    scan = scan_rp2k(path, progress=_progress(), use_cache=not no_cache)
    s = scan.summary()
    if as_json:
        click.echo(json.dumps(s, ensure_ascii=False, indent=2))
        return
    click.echo(f"root: {s['root']}\nmeta.csv: {s['meta_csv'] or '(none: SKU names from folder names)'}")
    click.echo(f"SKUs: {s['n_skus']}; usable images: train {s['n_images']['train']}, test {s['n_images']['test']}")
    click.echo(f"SKUs only in train: {s['skus_only_in']['train']}, only in test: {s['skus_only_in']['test']}")
    for folder, sku in s["renamed_folders"].items():
        click.echo(f"folder {folder!r} -> SKU {sku!r}")
    click.echo(f"refused files: {len(s['problems'])}")
    for p in s["problems"][:50]:
        click.echo(f"  {p['path']}: {p['reason']}")
    if len(s["problems"]) > 50:
        click.echo(f"  ... {len(s['problems']) - 50} more (use --json for all)")
    click.echo(f"fingerprint: {s['fingerprint']}")
