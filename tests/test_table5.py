import json

import pytest

from click.testing import CliRunner

from advrp2k.cli import cli
from advrp2k.board.paper import TABLE5 as PAPER
from advrp2k.jobs.table5 import claims


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
    assert "95.18 %" in md and "of 3 hold" in md and "Per product type" in md and "synthetic stand-in" in md
    assert "shows little effect" in md and "test: each Madry model keeps" in md
    assert "Adv. Train (eps = 8/255): trains, about" in first.output and "training in all: about" in first.output
    second = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert second.exit_code == 0
    assert second.output.count("its model is cached: no training") == 3  # said up front, before any work
    again = json.loads((tmp_path / "lb" / "table5.json").read_text())
    assert all(r["reused"] for r in again["rows"])
    assert [r["measured"] for r in again["rows"]] == [r["measured"] for r in table["rows"]]


def _row(defense, eps, clean, r4, r8):
    return {"defense": defense, "train_eps": eps, "measured": {"clean_acc": clean, "robust_acc": {"4/255": r4, "8/255": r8}}}


def test_claims_are_the_papers_and_follow_its_numbers():
    paper = [_row(d, e, v["clean_acc"], v["robust_acc"]["4/255"], v["robust_acc"]["8/255"]) for (d, e), v in PAPER.items()]
    assert [c["holds"] for c in claims(paper)] == [True, True, True]  # the paper's own table passes its tests
    stand_in = [_row("standard", None, .95, .09, 0), _row("madry", "4/255", .78, .64, .37), _row("madry", "8/255", .64, .58, .50)]
    assert [c["holds"] for c in claims(stand_in)] == [False, False, False]
    assert all(c["quote"] and c["test"] for c in claims(paper))


def test_a_stronger_suite_entry_serves_table5_with_its_pgd_numbers(tiny_synth, tmp_path):
    """An entry evaluated with PGD + FGSM (standalone numbers per attack) is reused, not overwritten."""
    common = ["--dataset", "rp2k_synth", "--data", str(tiny_synth), "--epochs", "1", "--image-size", "16",
              "--leaderboard", str(tmp_path / "lb")]
    run = CliRunner().invoke(cli, ["eval", "--defense", "standard", "--attacks", "pgd,fgsm", *common], catch_exceptions=False)
    assert run.exit_code == 0
    path = tmp_path / "lb" / "entries" / "rp2k_synth" / "linf" / "Standard_smallcnn.json"
    before = json.loads(path.read_text())
    CliRunner().invoke(cli, ["reproduce", "table5", *common], catch_exceptions=False)
    table = json.loads((tmp_path / "lb" / "table5.json").read_text())
    row = table["rows"][0]
    assert row["reused"] and row["measured"]["robust_acc"] == before["per_attack"]["pgd"]
    assert json.loads(path.read_text())["attacks"] == before["attacks"]  # the stronger entry stays


def test_reproduce_table3_runs_what_it_can_and_says_what_it_could_not(tiny_synth, tmp_path):
    args = ["reproduce", "table3", "--dataset", "rp2k_synth", "--data", str(tiny_synth), "--epochs", "1",
            "--image-size", "16", "--model-dir", str(tmp_path / "no-weights"), "--leaderboard", str(tmp_path / "lb")]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "lb" / "table3.json").read_text())
    by_name = {r["name"]: r for r in table["rows"]}
    assert by_name["Scratch"]["paper"] == {"top1": 0.9518, "top5": 0.9901}
    assert "measured" in by_name["Scratch"] and "measured" in by_name["Scratch + Augmentation"]
    assert by_name["Scratch + Augmentation"]["model_id"] == "Standard_smallcnn-augpaper"
    assert "(not 'smallcnn')" in by_name["Pre-train"]["not_run"]
    assert "Salman2020Do_R18.pt" in by_name["Robust pre-train"]["not_run"]
    claim = table["claims"][0]
    scratch, aug = by_name["Scratch"]["measured"]["top1"], by_name["Scratch + Augmentation"]["measured"]["top1"]
    assert claim["holds"] == (aug <= scratch + 0.01) and "necessarily increase" in claim["claim"]
    md = (tmp_path / "lb" / "table3.md").read_text()
    assert "95.54 %" in md and "Rows not run" in md and "synthetic stand-in" in md


@pytest.mark.slow
def test_reproduce_table3_with_pretrained_and_robust_backbones(tiny_synth, tmp_path):
    import torch
    import torchvision

    weights = tmp_path / "weights"
    (weights / "imagenet" / "Linf").mkdir(parents=True)
    torch.save({"state_dict": torchvision.models.resnet18().state_dict()}, weights / "imagenet" / "Linf" / "Salman2020Do_R18.pt")
    torch.save(torchvision.models.resnet18().state_dict(), weights / "resnet18-f37072fd.pth")
    args = ["reproduce", "table3", "--dataset", "rp2k_synth", "--data", str(tiny_synth), "--epochs", "1",
            "--image-size", "16", "--arch", "resnet18", "--model-dir", str(weights), "--leaderboard", str(tmp_path / "lb")]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "lb" / "table3.json").read_text())
    assert all("measured" in r for r in table["rows"]) and all(c["holds"] is not None for c in table["claims"])
