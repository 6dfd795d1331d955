"""The CLI through click's test runner: the happy path and every bad input the issue lists."""
import json
import pickle

import pytest

from advrp2k.models.checkpoints import save_model
from advrp2k.models.factory import create_model
from helpers import invoke as run

FAST = ["--epochs", "1", "--image-size", "16"]


def _eval(tiny_synth, tmp_path, *extra):
    return run("eval", "--defense", "standard", "--dataset", "rp2k_synth", "--data", str(tiny_synth), *FAST,
               "--leaderboard", str(tmp_path / "lb"), *extra)


def test_eval_writes_entry_and_reuses_cached_model(tiny_synth, tmp_path):
    first = _eval(tiny_synth, tmp_path)
    assert first.exit_code == 0, first.output
    assert "clean top-1" in first.output and "robust pgd @ 8/255" in first.output and "synthetic" in first.output
    path = tmp_path / "lb" / "entries" / "rp2k_synth" / "linf" / "Standard_smallcnn.json"
    entry = json.loads(path.read_text())
    assert entry["synthetic"] is True and entry["dataset"] == "rp2k_synth"
    assert set(entry["robust_acc"]) == {"4/255", "8/255"} and 0 <= entry["robust_acc"]["8/255"] <= entry["clean_acc"]
    repro = entry["reproducibility"]
    assert len(repro["checkpoint_sha256"]) == 64 and repro["dataset_fingerprint"] == entry["data"]["fingerprint"]
    assert {"torch", "torchvision", "advrp2k"} <= set(repro["versions"]) and repro["seed"] == 0
    assert repro["train_threads"] == __import__("torch").get_num_threads()  # CPU weights depend on it
    assert entry["per_group"]["product_type"] and entry["plugins"]["defense"]["package"] == "advrp2k"
    entry["name"] = "hand-written name"
    path.write_text(json.dumps(entry))
    second = _eval(tiny_synth, tmp_path, "--restart")  # evaluated again (a plain repeat reports the stored one)
    assert second.exit_code == 0
    again = json.loads(path.read_text())
    assert again["reproducibility"]["wall_s"]["train_reused_from_cache"] is True
    assert again["reproducibility"]["train_threads"] == repro["train_threads"]  # the training's, not this run's
    assert again["name"] == "hand-written name"  # hand-written fields survive a rewrite
    assert again["clean_acc"] == entry["clean_acc"]


@pytest.mark.parametrize("eps", ["abc", "300/255", "-4/255"])
def test_bad_eps_is_a_usage_error(eps):
    result = run("eval", "--defense", "madry", "--eps", eps)
    assert result.exit_code == 2 and "eps" in result.output and "Traceback" not in result.output


def test_missing_data_folder(tmp_path):
    result = run("eval", "--defense", "standard", "--data", str(tmp_path / "nonexistent"))
    assert result.exit_code == 2 and "does not exist" in result.output


def test_folder_that_is_not_rp2k(tmp_path):
    (tmp_path / "holiday").mkdir()
    result = run("eval", "--defense", "standard", "--data", str(tmp_path / "holiday"), "--leaderboard", str(tmp_path))
    assert result.exit_code == 1 and "no RP2K split found" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "entries").exists()


def test_madry_without_eps(tiny_synth):
    result = run("eval", "--defense", "madry", "--dataset", "rp2k_synth", "--data", str(tiny_synth))
    assert result.exit_code == 2 and "needs --eps" in result.output


def test_checkpoint_with_other_class_list(tiny_synth, tmp_path):
    ckpt = save_model(tmp_path / "other.safetensors", create_model("smallcnn", 3),
                      {"arch": "smallcnn", "classes": ["x", "y", "z"]})
    result = _eval(tiny_synth, tmp_path, "--checkpoint", str(ckpt))
    assert result.exit_code == 1 and "another class list" in result.output
    assert not (tmp_path / "lb").exists()


def test_code_running_pickle_checkpoint_is_refused(tiny_synth, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": Payload()}))
    result = _eval(tiny_synth, tmp_path, "--checkpoint", str(evil))
    assert result.exit_code == 1 and "refused" in result.output and "io.open" in result.output
    assert not marker.exists()


def test_checkpoint_from_train_is_usable_by_eval(tiny_synth, tmp_path, monkeypatch):
    """The trained file alone is evaluated: from a fresh cache, with nothing trained again."""
    import hashlib
    import shutil

    trained = run("train", "--defense", "standard", "--dataset", "rp2k_synth", "--data", str(tiny_synth), *FAST)
    assert trained.exit_code == 0, trained.output
    ckpt = tmp_path / "mine.safetensors"
    shutil.copyfile(trained.output.strip().split(": ", 1)[1], ckpt)
    fresh = tmp_path / "fresh-home"
    monkeypatch.setenv("ADVRP2K_HOME", str(fresh))
    result = _eval(tiny_synth, tmp_path, "--checkpoint", str(ckpt))
    assert result.exit_code == 0, result.output
    assert not (fresh / "models").exists() or not any((fresh / "models").iterdir())  # nothing was trained
    entry = json.loads((tmp_path / "lb" / "entries" / "rp2k_synth" / "linf" / "Standard_smallcnn.json").read_text())
    assert entry["reproducibility"]["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()


def test_list_and_bad_defense():
    listed = run("list", "defenses")
    assert "madry" in listed.output and "standard" in listed.output
    bad = run("eval", "--defense", "nope")
    assert bad.exit_code == 2 and "unknown defense 'nope'" in bad.output  # a usage error, as the README says


def test_data_inspect_json(fake_release):
    result = run("data", "inspect", str(fake_release), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n_skus"] == 4 and report["n_images"] == {"train": 8, "test": 6}
    assert any("truncated" in p["reason"] for p in report["problems"])
    assert all(set(p) == {"path", "reason"} for p in report["problems"])


def test_attribute_table_given_on_the_command_line(tiny_synth, tmp_path):
    from advrp2k.data import scan_rp2k

    classes = scan_rp2k(tiny_synth).classes
    table = tmp_path / "attrs.csv"
    table.write_text("sku,product_type,shape\n" + "".join(f"{c},kind{i % 2},round\n" for i, c in enumerate(classes)),
                     encoding="utf-8")
    result = _eval(tiny_synth, tmp_path, "--attributes", str(table))
    assert result.exit_code == 0, result.output
    entry = json.loads(next((tmp_path / "lb" / "entries").rglob("*.json")).read_text())
    assert set(entry["per_group"]["product_type"]) == {"kind0", "kind1"}
    assert set(entry["per_group"]["shape"]) == {"round"}
    missing = _eval(tiny_synth, tmp_path, "--attributes", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "--attributes" in missing.output
