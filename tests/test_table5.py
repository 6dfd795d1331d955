import json

from click.testing import CliRunner

from advrp2k.cli import cli
from advrp2k.table5 import PAPER, claims


def test_reproduce_table5_writes_json_md_and_entries_and_reuses_rows(tiny_synth, tmp_path):
    args = ["reproduce", "table5", "--dataset", "rp2k_synth", "--data", str(tiny_synth), "--epochs", "1",
            "--image-size", "16", "--leaderboard", str(tmp_path / "lb")]
    first = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    table = json.loads((tmp_path / "lb" / "table5.json").read_text())
    assert [(r["defense"], r["train_eps"]) for r in table["rows"]] == list(PAPER)
    for row in table["rows"]:
        assert set(row["measured"]["robust_acc"]) == {"4/255", "8/255"}
        assert row["paper"] == PAPER[(row["defense"], row["train_eps"])]
        assert "product_type" in row["per_group"] and "shape" in row["per_group"]
        assert (tmp_path / "lb" / "entries" / "rp2k_synth" / "linf" / f"{row['model_id']}.json").is_file()
        assert row["reused"] is False
    assert table["dataset"]["synthetic"] is True and len(table["dataset"]["fingerprint"]) == 64
    assert table["attack"]["configs"][0]["name"] == "pgd"
    md = (tmp_path / "lb" / "table5.md").read_text()
    assert "95.18 %" in md and "of 4 hold" in md and "Per product type" in md
    second = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert second.exit_code == 0
    again = json.loads((tmp_path / "lb" / "table5.json").read_text())
    assert all(r["reused"] for r in again["rows"])
    assert [r["measured"] for r in again["rows"]] == [r["measured"] for r in table["rows"]]


def _row(defense, eps, clean, r4, r8):
    return {"defense": defense, "train_eps": eps, "measured": {"clean_acc": clean, "robust_acc": {"4/255": r4, "8/255": r8}}}


def test_claims_detect_a_table_that_does_not_have_the_papers_shape():
    good = [_row("standard", None, .95, .05, 0), _row("madry", "4/255", .7, .5, .2), _row("madry", "8/255", .6, .45, .3)]
    assert all(c["holds"] for c in claims(good))
    bad = [_row("standard", None, .95, .30, .2), _row("madry", "4/255", .97, .35, .1), _row("madry", "8/255", .6, .45, .05)]
    assert [c["holds"] for c in claims(bad)] == [False, False, False, False]
