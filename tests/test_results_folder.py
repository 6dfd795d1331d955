"""User results go to a folder of the user's own, never into the repository's shipped board, and
an entry is never replaced by a weaker evaluation without --force."""
import hashlib
import json

from helpers import invoke

TINY = ["--dataset", "rp2k_synth", "--epochs", "1", "--image-size", "16", "--no-escalate"]


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_eval_in_a_clone_leaves_the_shipped_leaderboard_byte_identical(tiny_synth, tmp_path, monkeypatch):
    clone = tmp_path / "clone"
    shipped = clone / "leaderboard" / "entries" / "rp2k_synth" / "linf"
    shipped.mkdir(parents=True)
    (shipped / "Standard_smallcnn.json").write_text('{"shipped": true}')
    before = _digest(clone / "leaderboard")
    monkeypatch.chdir(clone)
    monkeypatch.delenv("ADVRP2K_RESULTS")
    result = invoke("eval", "--defense", "standard", "--data", tiny_synth, *TINY)
    assert result.exit_code == 0, result.output
    assert _digest(clone / "leaderboard") == before
    written = clone / "advrp2k-results" / "entries" / "rp2k_synth" / "linf" / "Standard_smallcnn.json"
    assert "advrp2k-results" in result.output
    entry = json.loads(written.read_text())
    # What decides bit-for-bit reproducibility is recorded, and a readable name for the site.
    numeric = entry["reproducibility"]["train_numeric_identity"]
    assert numeric["threads"] >= 1 and "cpu_capability" in numeric and "deterministic_algorithms" in numeric
    assert entry["defense_paper"]["title"] == "Standard training (no defense)"


def test_a_weaker_evaluation_does_not_replace_a_stronger_entry_without_force(tiny_synth, tmp_path):
    board = tmp_path / "board"
    common = ["eval", "--defense", "standard", "--data", tiny_synth, *TINY, "--leaderboard", board]
    strong = invoke(*common, "--attacks", "pgd,fgsm")
    assert strong.exit_code == 0, strong.output
    entry = next(board.rglob("entries/**/Standard_smallcnn.json"))
    kept = entry.read_bytes()
    for weaker, lost in ((["--attacks", "pgd"], "attack fgsm"), (["--attacks", "pgd,fgsm", "--n-examples", "3"],
                                                                 "test images")):
        refused = invoke(*common, *weaker)
        assert refused.exit_code == 2 and lost in refused.output and "--force" in refused.output, refused.output
        assert entry.read_bytes() == kept
    forced = invoke(*common, "--attacks", "pgd", "--force")
    assert forced.exit_code == 0, forced.output
    assert [a["name"] for a in json.loads(entry.read_text())["plugins"]["attacks"]] == ["pgd"]


def test_a_repeated_eval_reports_the_finished_evaluation_without_attacking(tiny_synth, tmp_path, monkeypatch):
    import advrp2k.jobs.run as run_module

    common = ["eval", "--defense", "standard", "--data", tiny_synth, *TINY, "--leaderboard", tmp_path / "board"]
    first = invoke(*common)
    assert first.exit_code == 0, first.output

    def no_work(*args, **kwargs):
        raise AssertionError("a repeated evaluation attacked or classified again")

    monkeypatch.setattr(run_module, "evaluate", no_work)
    monkeypatch.setattr(run_module, "load_split", no_work)
    again = invoke(*common)
    assert again.exit_code == 0, again.output
    assert "nothing attacked again" in again.output
    assert again.output.split("\n\n")[0] == first.output.split("\n\n")[0]  # the same table's heading
    # Another setting that changes results is evaluated, never replayed.
    other = invoke(*common, "--seed", "7")
    assert other.exit_code != 0 and "attacked or classified again" in str(other.exception)
