"""Pretrained and robust backbones (torchvision, RobustBench), read safely from a local folder,
fine-tuned on tiny data; and the paper's training augmentation."""
import json
import pickle

import pytest
import torch
import torchvision

from advrp2k.train.augment import augment_batch
from helpers import invoke as _run

TINY = ["--dataset", "rp2k_synth", "--epochs", "1", "--image-size", "16"]


@pytest.fixture
def model_dir(tmp_path):
    """A RobustBench model file (random weights) in RobustBench's folder layout, and a torchvision one."""
    folder = tmp_path / "weights"
    (folder / "imagenet" / "Linf").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({"state_dict": torchvision.models.resnet18().state_dict()},
               folder / "imagenet" / "Linf" / "Salman2020Do_R18.pt")
    torch.save(torchvision.models.resnet18().state_dict(), folder / "resnet18-f37072fd.pth")
    return folder


def test_robustbench_backbone_is_loaded_through_robustbench_and_fine_tuned(tiny_synth, model_dir, tmp_path):
    result = _run("eval", "--defense", "standard", "--arch", "rb:Salman2020Do_R18", "--model-dir", str(model_dir),
                  "--data", str(tiny_synth), *TINY, "--leaderboard", str(tmp_path / "lb"))
    assert result.exit_code == 0, result.output
    entry = json.loads((tmp_path / "lb" / "entries" / "rp2k_synth" / "linf" / "Standard_rb-Salman2020Do_R18.json")
                       .read_text())
    import hashlib

    sha = hashlib.sha256((model_dir / "imagenet" / "Linf" / "Salman2020Do_R18.pt").read_bytes()).hexdigest()
    assert entry["backbone"]["sha256"] == sha and entry["backbone"]["source"].startswith("robustbench")
    assert entry["arch"] == "rb:Salman2020Do_R18" and entry["data"]["n_classes"] == 8
    settings = entry["reproducibility"]["train_settings"]
    assert settings["lr"] == pytest.approx(0.01) and settings["extra"]["init"]["sha256"] == sha  # fine-tuning


def test_torchvision_imagenet_backbone(tiny_synth, model_dir, tmp_path):
    result = _run("eval", "--defense", "standard", "--arch", "resnet18", "--pretrained", "imagenet", "--model-dir",
                  str(model_dir), "--data", str(tiny_synth), *TINY, "--leaderboard", str(tmp_path / "lb"))
    assert result.exit_code == 0, result.output
    entry = json.loads(next((tmp_path / "lb" / "entries").rglob("Standard_resnet18-in1k.json")).read_text())
    assert entry["backbone"]["source"] == "torchvision" and len(entry["backbone"]["sha256"]) == 64


def test_missing_weights_say_where_to_put_them_before_any_work(tiny_synth, tmp_path, isolated_home):
    for args, says in ((["--arch", "rb:Salman2020Do_R18"], "Salman2020Do_R18.pt"),
                       (["--arch", "resnet34", "--pretrained", "imagenet"], "resnet34-b627a593.pth")):
        result = _run("eval", "--defense", "standard", *args, "--model-dir", str(tmp_path / "empty"),
                      "--data", str(tiny_synth), *TINY, "--leaderboard", str(tmp_path / "lb"))
        assert result.exit_code == 1 and says in result.output and "nothing is downloaded" in result.output
        assert "Traceback" not in result.output and not (isolated_home / "scans").exists()
    unknown = _run("eval", "--defense", "standard", "--arch", "rb:NoSuchModel", "--leaderboard", str(tmp_path / "lb"))
    assert unknown.exit_code == 2 and "not a RobustBench ImageNet Linf model" in unknown.output


class _Boom:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch /tmp/advrp2k-pwned')",))


def test_weights_with_a_code_running_pickle_are_refused(tiny_synth, model_dir, tmp_path):
    with open(model_dir / "imagenet" / "Linf" / "Salman2020Do_R18.pt", "wb") as handle:
        pickle.dump({"state_dict": _Boom()}, handle)
    result = _run("eval", "--defense", "standard", "--arch", "rb:Salman2020Do_R18", "--model-dir", str(model_dir),
                  "--data", str(tiny_synth), *TINY, "--leaderboard", str(tmp_path / "lb"))
    assert result.exit_code == 1 and "refused weights" in result.output and "nothing in it was run" in result.output
    import os

    assert not os.path.exists("/tmp/advrp2k-pwned")


def test_paper_augmentation_is_deterministic_and_recorded(tiny_synth, tmp_path):
    x = torch.rand(3, 3, 32, 32)
    a = augment_batch(x, "paper", torch.Generator().manual_seed(1))
    b = augment_batch(x, "paper", torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, x) and a.min() >= 0 and a.max() <= 1
    result = _run("eval", "--defense", "standard", "--augment", "paper", "--data", str(tiny_synth), *TINY,
                  "--leaderboard", str(tmp_path / "lb"))
    assert result.exit_code == 0, result.output
    entry = json.loads(next((tmp_path / "lb" / "entries").rglob("*.json")).read_text())
    assert entry["reproducibility"]["train_settings"]["augment"] == "paper"
