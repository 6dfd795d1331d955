"""Resumable training: a killed run resumes to the same weights and numbers as an uninterrupted one."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from advrp2k.plugins.defense import create_defense
from advrp2k.models.factory import create_model
from advrp2k.train.trainer import TrainSettings, train
from helpers import CLI



def _cli(args, home, **kw):
    env = {**os.environ, "ADVRP2K_HOME": str(home), "ADVRP2K_NO_PROGRESS": "1"}
    return subprocess.Popen(CLI + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _model_file(home: Path) -> Path:
    return next(home.glob("models/*/model.safetensors"))


def test_sigterm_then_resume_gives_identical_weights_and_numbers(tiny_synth, tmp_path):
    args = ["train", "--defense", "madry", "--eps", "8/255", "--dataset", "rp2k_synth", "--data", str(tiny_synth),
            "--epochs", "40", "--image-size", "16"]
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    proc = _cli(args, home_a)
    deadline = time.time() + 120
    while not list(home_a.glob("models/*/run/state-e0002-*.pt")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "training never reached epoch 2"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "re-run to resume" in err and not list(home_a.glob("models/*/model.safetensors"))
    resumed = _cli(args, home_a)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    straight = _cli(args, home_b)
    assert straight.wait(timeout=300) == 0, straight.communicate()
    a, b = load_file(_model_file(home_a)), load_file(_model_file(home_b))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Identity from content: the resumed and the uninterrupted training wrote the same bytes.
    assert _model_file(home_a).read_bytes() == _model_file(home_b).read_bytes()
    numbers = []
    for home in (home_a, home_b):
        ev = _cli(["eval", "--defense", "madry", "--eps", "8/255", "--dataset", "rp2k_synth", "--data",
                   str(tiny_synth), "--image-size", "16", "--checkpoint", str(_model_file(home)),
                   "--leaderboard", str(home / "lb")], home)
        assert ev.wait(timeout=300) == 0, ev.communicate()
        entry = json.loads(next((home / "lb" / "entries").rglob("*.json")).read_text())
        numbers.append((entry["clean_acc"], entry["robust_acc"]))
    assert numbers[0] == numbers[1]


def _tiny_train(run_dir, epochs=3):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(40, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    y = torch.randint(0, 3, (40,), generator=g)
    model = create_model("smallcnn", 3, width=4)
    settings = TrainSettings(epochs=epochs, batch_size=16, lr_decay_every=2)
    return train(model, create_defense("standard"), x, y, settings, run_dir, torch.device("cpu"))


def test_corrupt_latest_checkpoint_is_named_and_previous_used(tmp_path, caplog):
    reference = _tiny_train(tmp_path / "ref").state_dict()
    _tiny_train(tmp_path / "run", epochs=2)  # leaves state-e0001 and state-e0002
    states = sorted((tmp_path / "run").glob("state-*.pt"))
    assert [p.name[:11] for p in states] == ["state-e0001", "state-e0002"]
    states[-1].write_bytes(states[-1].read_bytes()[:200])  # truncated newest
    with caplog.at_level("WARNING"):
        resumed = _tiny_train(tmp_path / "run").state_dict()
    assert states[-1].name in caplog.text and "corrupt" in caplog.text
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_finished_run_is_not_trained_again(tmp_path):
    first = _tiny_train(tmp_path / "run").state_dict()
    again = _tiny_train(tmp_path / "run").state_dict()  # resumes at the final epoch: no more steps
    assert all(torch.equal(first[k], again[k]) for k in first)
