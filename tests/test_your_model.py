"""A model of the user's own on the benchmark: ``advrp2k.benchmark``, ``eval --model/--weights``,
``--arch timm:<name>``, and checkpoints that keep loading."""
from __future__ import annotations

import json
import os
import pickle
import sys

import pytest
import torch
from safetensors.torch import save_file

import advrp2k
from advrp2k.core.errors import UsageError
from advrp2k.models.checkpoints import save_model
from advrp2k.models.factory import create_model
from helpers import invoke

TINY = ["--image-size", "16", "--no-escalate"]


@pytest.fixture(scope="module")
def trained(tiny_synth, tmp_path_factory):
    """A smallcnn trained by advrp2k on the tiny stand-in: its checkpoint, class list and weights."""
    home = tmp_path_factory.mktemp("trained-home")
    old = os.environ.get("ADVRP2K_HOME")
    os.environ["ADVRP2K_HOME"] = str(home)
    try:
        result = invoke("train", "--defense", "standard", "--data", tiny_synth, "--epochs", "12", "--image-size", "16")
    finally:
        os.environ.pop("ADVRP2K_HOME") if old is None else os.environ.__setitem__("ADVRP2K_HOME", old)
    assert result.exit_code == 0, result.output
    path = next(home.rglob("model.safetensors"))
    from advrp2k.models.checkpoints import load_checkpoint

    state, record = load_checkpoint(path)
    return {"checkpoint": path, "classes": record["classes"], "state": state}


def _model(trained) -> torch.nn.Module:
    model = create_model("smallcnn", len(trained["classes"]))
    model.load_state_dict(trained["state"])
    return model.eval()


def _entry(board, model_id):
    return json.loads((board / "entries" / "rp2k_synth" / "linf" / f"{model_id}.json").read_text())


def test_benchmark_gives_the_cli_numbers_on_the_same_weights(trained, tiny_synth, tmp_path):
    factory = tmp_path / "mine.py"
    factory.write_text("import advrp2k\n\ndef build(num_classes):\n    return advrp2k.create_model('smallcnn', num_classes)\n")
    weights = tmp_path / "w.pt"
    torch.save(trained["state"], weights)
    board = tmp_path / "board"
    cli = invoke("eval", "--model", f"{factory}:build", "--weights", weights, "--classes", "dataset",
                 "--data", tiny_synth, *TINY, "--leaderboard", board)
    assert cli.exit_code == 0, cli.output
    by_cli = _entry(board, "External_build")
    result = advrp2k.benchmark(_model(trained), classes="dataset", data=tiny_synth, image_size=16, escalate=False)
    assert result.clean_acc > 1.5 / len(trained["classes"])  # trained: the comparison is not between zeros
    assert result.clean_acc == by_cli["clean_acc"] and result.robust_acc == by_cli["robust_acc"]
    assert result.robust_acc["8/255"] < result.clean_acc  # the attack did work
    assert len(result.examples) == by_cli["n_examples"] and result.path is None
    # the reference: advrp2k's own --checkpoint route on the same weights
    ref = invoke("eval", "--checkpoint", trained["checkpoint"], "--data", tiny_synth, *TINY, "--leaderboard", board)
    assert ref.exit_code == 0, ref.output
    assert _entry(board, "Standard_smallcnn")["robust_acc"] == by_cli["robust_acc"]
    assert by_cli["defense"] == "external" and by_cli["arch"] == "python:mine.py:build"
    assert by_cli["model_source"]["weights_sha256"] == by_cli["reproducibility"]["checkpoint_sha256"]


def test_safetensors_weights_with_a_named_arch(trained, tiny_synth, tmp_path):
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in trained["state"].items()}, str(weights))
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(trained["classes"]) + "\n", encoding="utf-8")
    board = tmp_path / "board"
    result = invoke("eval", "--arch", "smallcnn", "--weights", weights, "--classes", names, "--name", "mine",
                    "--data", tiny_synth, *TINY, "--leaderboard", board)
    assert result.exit_code == 0, result.output
    entry = _entry(board, "External_mine")
    assert entry["arch"] == "smallcnn" and entry["model_source"]["weights"] == "w.safetensors"


def test_a_model_whose_classes_are_in_another_order_is_refused(trained, tiny_synth, tmp_path):
    shuffled = list(reversed(trained["classes"]))
    with pytest.raises(UsageError, match="another order"):
        advrp2k.benchmark(_model(trained), classes=shuffled, data=tiny_synth, image_size=16)
    with pytest.raises(UsageError, match="only in the model"):
        advrp2k.benchmark(_model(trained), classes=trained["classes"][:-1] + ["no such SKU"], data=tiny_synth,
                          image_size=16)
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(shuffled), encoding="utf-8")
    weights = tmp_path / "w.pt"
    torch.save(trained["state"], weights)
    result = invoke("eval", "--arch", "smallcnn", "--weights", weights, "--classes", names, "--data", tiny_synth, *TINY)
    assert result.exit_code == 2 and "another order" in result.output


def test_the_class_order_must_be_said(trained, tiny_synth, tmp_path):
    with pytest.raises(UsageError, match="class order"):
        advrp2k.benchmark(_model(trained), classes=None, data=tiny_synth)
    weights = tmp_path / "w.pt"
    torch.save(trained["state"], weights)
    result = invoke("eval", "--arch", "smallcnn", "--weights", weights, "--data", tiny_synth, *TINY)
    assert result.exit_code == 2 and "--classes dataset" in result.output


def test_a_model_of_the_wrong_width_is_refused(tiny_synth):
    with pytest.raises(UsageError, match="logits"):
        advrp2k.benchmark(create_model("smallcnn", 3), classes="dataset", data=tiny_synth, image_size=16)


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PAYLOAD_MARKER']}",))


def test_a_pickled_full_model_is_refused_and_never_runs(tiny_synth, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PAYLOAD_MARKER", str(marker))
    evil = tmp_path / "model.pt"
    with open(evil, "wb") as f:
        pickle.dump({"net": Payload()}, f)
    whole = tmp_path / "whole.pt"
    torch.save(create_model("smallcnn", 8), whole)  # a full pickled module, harmless but not weights
    for path in (evil, whole):
        result = invoke("eval", "--arch", "smallcnn", "--weights", path, "--classes", "dataset",
                        "--data", tiny_synth, *TINY)
        assert result.exit_code != 0 and "refused weights" in result.output and "nothing in it was run" in result.output
    assert not marker.exists()


def test_model_file_errors_are_clear(tiny_synth, tmp_path):
    for spec, said in [("nofile.py:build", "not a file"), (f"{tmp_path}/x.txt:build", "FILE.py:FACTORY")]:
        result = invoke("eval", "--model", spec, "--classes", "dataset", "--data", tiny_synth, *TINY)
        assert result.exit_code == 2 and said in result.output, result.output
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    result = invoke("eval", "--model", f"{broken}:build", "--classes", "dataset", "--data", tiny_synth, *TINY)
    assert result.exit_code == 2 and "importing" in result.output and "boom" in result.output
    result = invoke("eval", "--model", f"{broken}:build", "--defense", "madry", "--eps", "8/255", "--data", tiny_synth)
    assert result.exit_code == 2 and "leave out --defense" in result.output


def test_timm_resnet18_trains_one_epoch_and_evaluates(tiny_synth, tmp_path):
    pytest.importorskip("timm")
    board = tmp_path / "board"
    result = invoke("eval", "--arch", "timm:resnet18", "--epochs", "1", "--n-examples", "8", "--data", tiny_synth,
                    *TINY, "--leaderboard", board)
    assert result.exit_code == 0, result.output
    entry = _entry(board, "Standard_timm-resnet18")
    import timm

    assert entry["arch"] == "timm:resnet18" and entry["arch_library"] == {"name": "timm", "version": timm.__version__}
    assert entry["reproducibility"]["train_settings"]["extra"]["arch_library"]["version"] == timm.__version__


def test_an_unknown_timm_name_and_a_missing_timm_give_one_line(tiny_synth, monkeypatch):
    pytest.importorskip("timm")
    result = invoke("eval", "--arch", "timm:resnet1800", "--data", tiny_synth, *TINY)
    assert result.exit_code == 2 and "timm has no model 'resnet1800'" in result.output
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    result = invoke("eval", "--arch", "timm:resnet18", "--data", tiny_synth, *TINY)
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert "timm is not installed: pip install 'advrp2k[timm]'" in result.output


def test_a_checkpoint_with_an_older_record_still_loads_and_evaluates(trained, tiny_synth, tmp_path):
    """The record as the first released format wrote it (no arch_id, backbone, fingerprint or
    version): fixed here, so a later change of the writer cannot make it load by accident."""
    old_record = {"arch": "smallcnn", "classes": trained["classes"], "image_size": 16, "defense": "standard",
                  "defense_config": {"eps": None, "eps_label": None},
                  "train_settings": {"epochs": 3, "batch_size": 32, "lr": 0.1, "seed": 0}}
    path = save_model(tmp_path / "old.safetensors", _model(trained), old_record)
    board = tmp_path / "board"
    result = invoke("eval", "--checkpoint", path, "--data", tiny_synth, "--no-escalate", "--leaderboard", board)
    assert result.exit_code == 0, result.output
    ours = invoke("eval", "--checkpoint", trained["checkpoint"], "--data", tiny_synth, *TINY,
                  "--leaderboard", tmp_path / "b2")
    assert _entry(board, "Standard_smallcnn")["robust_acc"] == _entry(tmp_path / "b2", "Standard_smallcnn")["robust_acc"]
    assert ours.exit_code == 0


def test_external_trains_nothing_and_data_classes_lists_the_order(trained, tiny_synth):
    result = invoke("train", "--defense", "external", "--data", tiny_synth)
    assert result.exit_code == 2 and "trains nothing" in result.output
    listed = invoke("data", "classes", "--data", tiny_synth)
    assert listed.exit_code == 0 and listed.output.splitlines() == trained["classes"]
    assert advrp2k.dataset_classes(tiny_synth) == trained["classes"]


def test_with_normalization_makes_a_normalised_input_model_take_unit_images():
    inner = torch.nn.Identity()
    wrapped = advrp2k.with_normalization(inner, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.full((1, 3, 2, 2), 0.75)
    assert torch.allclose(wrapped(x), torch.full_like(x, 1.0))
