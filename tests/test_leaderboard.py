"""Entry validation on write and read, and `advrp2k submit`."""
import json
import math

import pytest
from click.testing import CliRunner

from advrp2k.cli import cli
from advrp2k.core.errors import EntryValidationError
from advrp2k.board.entries import SCHEMA_PATH, entry_problems, validate_entry, write_entry


def good_entry(**over):
    entry = {"model_id": "Standard_smallcnn", "dataset": "rp2k_synth", "synthetic": True, "threat_model": "linf",
             "defense": "standard", "arch": "smallcnn", "clean_acc": 0.9, "robust_acc": {"4/255": 0.3, "8/255": 0.1},
             "attacks": [{"name": "pgd"}], "n_examples": 10,
             "reproducibility": {"seed": 0, "versions": {}, "device": "cpu", "checkpoint_sha256": "0" * 64}}
    entry.update(over)
    return entry


def test_good_entry_passes():
    assert entry_problems(good_entry()) == []


@pytest.mark.parametrize("change,field", [
    ({"clean_acc": math.nan}, "clean_acc"),
    ({"robust_acc": {"4/255": 0.95, "8/255": 0.1}}, "robust_acc.4/255"),
    ({"robust_acc": {"4/255": 0.1, "8/255": 0.3}}, "robust_acc.8/255"),
    ({"surprise": 1}, "surprise"),
    ({"link": "javascript:alert(1)"}, "link"),
    ({"model_id": "../../etc/passwd"}, "model_id"),
    ({"n_examples": 0}, "n_examples"),
])
def test_each_problem_names_its_field(change, field):
    problems = entry_problems(good_entry(**change), "x.json")
    assert problems and all(p.startswith("x.json: field '") for p in problems)
    assert any(f"field '{field}'" in p for p in problems), problems
    with pytest.raises(EntryValidationError):
        validate_entry(good_entry(**change))


def test_write_refuses_invalid_entry_and_writes_nothing(tmp_path):
    with pytest.raises(EntryValidationError, match="model_id"):
        write_entry(tmp_path, good_entry(model_id="../evil"))
    assert not any(tmp_path.rglob("*.json"))


def test_validate_command_reports_file_and_field(tmp_path):
    write_entry(tmp_path, good_entry())
    bad = tmp_path / "entries" / "rp2k_synth" / "linf" / "Bad.json"
    bad.write_text(json.dumps(good_entry(model_id="Bad", clean_acc=0.1)))
    result = CliRunner().invoke(cli, ["leaderboard", "validate", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{bad}: field 'robust_acc.4/255'" in result.output and "1 valid entries" in result.output


def test_repository_schema_copy_matches_the_package():
    from pathlib import Path

    repo_copy = Path(__file__).resolve().parents[1] / "leaderboard" / "schema.json"
    assert json.loads(repo_copy.read_text()) == json.loads(SCHEMA_PATH.read_text())


def test_submit_writes_a_validated_entry_with_submitter_fields(tiny_synth, tmp_path):
    args = ["submit", "--defense", "standard", "--dataset", "rp2k_synth", "--data", str(tiny_synth), "--epochs", "1",
            "--image-size", "16", "--name", "<b>Plain</b> training", "--authors", "A. Person",
            "--link", "https://example.org/paper", "--leaderboard", str(tmp_path / "lb")]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    entry = json.loads(next((tmp_path / "lb" / "entries").rglob("*.json")).read_text())
    assert entry["name"] == "<b>Plain</b> training" and entry["link"] == "https://example.org/paper"
    assert entry["submitted"]["tool"] == "advrp2k submit" and len(entry["reproducibility"]["checkpoint_sha256"]) == 64
    assert entry["plugins"]["defense"]["package"] == "advrp2k"
    from advrp2k.board.ranking import is_ranked

    assert is_ranked(entry) and set(entry["per_attack"]) == {"pgd", "autoattack"}  # the ranking suite, exactly
    assert len(list((tmp_path / "lb" / "entries").rglob("*.json"))) == 1  # written once, with the fields
    http = CliRunner().invoke(cli, args[:-4] + ["--link", "http://x.org", "--leaderboard", str(tmp_path / "lb2")])
    assert http.exit_code == 2 and "https://" in http.output and not (tmp_path / "lb2").exists()


def test_submit_runs_each_asked_threat_models_ranking_protocol(tiny_synth, tmp_path):
    args = ["submit", "--defense", "standard", "--dataset", "rp2k_synth", "--data", str(tiny_synth), "--epochs", "1",
            "--image-size", "16", "--name", "Plain", "--authors", "A. Person", "--link", "https://example.org/paper",
            "--leaderboard", str(tmp_path / "lb")]
    refused = CliRunner().invoke(cli, [*args, "--threat", "linf,stickers"])
    assert refused.exit_code == 2 and "stickers" in refused.output and not (tmp_path / "lb").exists()
    result = CliRunner().invoke(cli, [*args, "--threat", "shelf"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    written = list((tmp_path / "lb" / "entries").rglob("*.json"))
    assert [p.parent.name for p in written] == ["shelf"]  # only the threat model asked for
    entry = json.loads(written[0].read_text())
    from advrp2k.board.ranking import is_ranked

    assert entry["threat_model"] == "shelf" and set(entry["per_attack"]) == {"shelf_grid"} and is_ranked(entry)
    assert entry["submitted"]["tool"] == "advrp2k submit"
