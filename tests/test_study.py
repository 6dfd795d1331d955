"""``advrp2k study skus`` on tiny stand-ins: every (count, model) pair trained, evaluated under the
ranking suite, written as a table and a plot, and a re-run attacks nothing again."""
from __future__ import annotations

import json

from helpers import invoke

from advrp2k.data.synth_scale import scaled_catalogue


def test_smaller_catalogues_are_the_first_skus_of_larger_ones():
    small, large = scaled_catalogue(5, 0, per_sku=(3, 1)), scaled_catalogue(11, 0, per_sku=(3, 1))
    assert [s.name for s in small] == [s.name for s in large[:5]]
    assert {(s.n_train, s.n_test) for s in large} == {(3, 1)}


def test_study_skus_writes_the_table_and_resumes(tmp_path):
    board = tmp_path / "board"
    args = ["study", "skus", "--skus", "4,6", "--per-sku", "3,1", "--image-size", "16", "--leaderboard", board]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    study = json.loads((board / "studies" / "skus.json").read_text())
    assert [(r["skus"], r["defense"]) for r in study["rows"]] == [(4, "standard"), (4, "madry"), (6, "standard"),
                                                                   (6, "madry")]
    for row in study["rows"]:
        entry = json.loads(open(row["entry"]).read())
        assert entry["synthetic"] and entry["n_examples"] == row["skus"]  # the whole test split
        assert [a["name"] for a in entry["plugins"]["attacks"]] == ["pgd", "autoattack"]
        assert entry["robust_acc"]["8/255"] == row["robust_8"] and entry["dataset"] == row["dataset"]
    assert len({r["dataset"] for r in study["rows"]}) == 2  # one board per stand-in, never mixed
    assert "| 6 | madry 8/255 |" in (board / "studies" / "skus.md").read_text()
    assert (board / "studies" / "skus.svg").read_text().startswith("<svg")
    again = invoke(*args)
    assert again.exit_code == 0 and json.loads((board / "studies" / "skus.json").read_text())["rows"] == study["rows"]


def test_study_refuses_counts_below_4_in_one_line():
    result = invoke("study", "skus", "--skus", "3,5")
    assert result.exit_code == 2 and "at least 4" in result.output
