"""``advrp2k compare`` and ``advrp2k export``: render analyses of saved results (no attacks run)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from advrp2k.cli.group import cli
from advrp2k.cli.params import results_argument
from advrp2k.core.errors import UsageError
from advrp2k.core.threat import THREAT_MODELS

EXPORT_FORMATS = ("csv", "json", "parquet")


def _load_entry(path: Path) -> dict:
    from advrp2k.board.entries import entry_problems, read_regular_file

    try:
        entry = json.loads(read_regular_file(path))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable entry ({str(exc)[:200]}): pass a file under LEADERBOARD/entries/")
    problems = entry_problems(entry, str(path))
    if problems:
        raise UsageError(problems[0])
    return entry


@cli.command("compare")
@click.argument("a", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.argument("b", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the paired bootstrap.")
def compare_cmd(a, b, as_json, seed):
    """Paired comparison of two entries evaluated on the same test set.

    A and B are entry files of one threat model (``<results>/entries/<dataset>/<threat>/<model_id>.json``);
    their per-example results, published beside them under ``examples/``, are what is compared.

    Per budget: the examples robust in A only and in B only, the exact McNemar p-value, and the
    difference A - B with its paired-bootstrap 95 % interval.
    """
    from advrp2k.analysis.analyses import compare
    from advrp2k.analysis.results import examples

    ea, eb = _load_entry(a), _load_entry(b)
    ta, tb = ea.get("threat_model", "linf"), eb.get("threat_model", "linf")
    if ta != tb:
        raise UsageError(f"{a.name} is a {ta} entry and {b.name} a {tb} entry: compare two entries of one threat "
                         f"model (entries/<dataset>/<threat>/)")
    fa, fb = ea.get("data", {}).get("fingerprint"), eb.get("data", {}).get("fingerprint")
    if fa != fb or ea["n_examples"] != eb["n_examples"]:
        raise UsageError(f"{a.name} and {b.name} were not evaluated on the same test set (data fingerprints "
                         f"{str(fa)[:12]} vs {str(fb)[:12]}, {ea['n_examples']} vs {eb['n_examples']} examples): "
                         f"a paired comparison needs the same examples")
    try:
        rows = compare(examples(a), examples(b), seed=seed)
    except ValueError as exc:
        raise UsageError(f"{a.name} and {b.name}: {exc}")
    if as_json:
        click.echo(json.dumps({"a": ea["model_id"], "b": eb["model_id"], "threat_model": ta, "n_examples": ea["n_examples"],
                               "synthetic": ea["synthetic"], "rows": rows}, indent=2))
        return
    click.echo(format_comparison(ea, eb, rows))


def format_comparison(ea: dict, eb: dict, rows: list[dict]) -> str:
    lines = [f"A: {ea['model_id']}", f"B: {eb['model_id']}",
             f"threat model {ea.get('threat_model', 'linf')}; {ea['n_examples']} paired test examples ({ea.get('data', {}).get('description', ea['dataset'])})", "",
             f"{'budget':<7}{'A':>8}{'B':>8}{'A only':>8}{'B only':>8}{'McNemar p':>11}   A - B [95 % CI]"]
    for r in rows:
        lo, hi = r["diff_ci95"]
        lines.append(f"{r['eps']:<7}{r['acc_a']:>8.2%}{r['acc_b']:>8.2%}{r['a_only']:>8}{r['b_only']:>8}"
                     f"{r['p_mcnemar']:>11.3g}   {r['diff']:+.2%} [{lo:+.2%}, {hi:+.2%}]")
    if ea.get("synthetic"):
        lines.append("(synthetic data: these numbers are not RP2K results)")
    return "\n".join(lines)


@cli.command("export")
@results_argument
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="csv", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Output file (default LEADERBOARD/leaderboard.FORMAT).")
@click.option("--threat", type=click.Choice(list(THREAT_MODELS)), default=None,
              help="Only this threat model's boards [default: every threat model; the threat_model column says which].")
def export_cmd(leaderboard, fmt, out, threat):
    """Write the ranked leaderboard table with 95 % intervals as CSV, JSON or Parquet (pandas).

    Budget columns are named by label (``robust_acc@8/255``, ``robust_acc@2%``); with several
    threat models in one table, ``--threat`` keeps one threat model's columns apart."""
    from advrp2k.core.io import check_output_file
    from advrp2k.board.export import write_table
    from advrp2k.board.entries import load_entries
    from advrp2k.board.ranking import ranked_table

    if not (leaderboard / "entries").is_dir():
        raise UsageError(f"{leaderboard}/entries does not exist: pass the leaderboard folder")
    out = out or leaderboard / f"leaderboard.{fmt}"
    check_output_file(out, "--out")
    if fmt == "parquet":
        _require_parquet_engine()
    entries, problems = load_entries(leaderboard)
    for p in problems:
        click.echo(f"skipped invalid entry: {p}", err=True)
    table = ranked_table(leaderboard, entries)
    if threat is not None:  # one threat model's rows, without the other threat models' budget columns
        table = table[table["threat_model"] == threat] if len(table) else table
        table = table.dropna(axis=1, how="all").reset_index(drop=True)
    write_table(table, out, fmt)
    ranked = int(table["rank"].notna().sum()) if len(table) else 0
    click.echo(f"wrote {out} ({len(table)} entries, {ranked} ranked)")


def _require_parquet_engine() -> None:
    import importlib.util

    if not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet")):
        raise UsageError("--format parquet needs pyarrow: python3 -m pip install pyarrow (or use csv or json)")
