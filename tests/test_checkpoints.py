"""Checkpoints load as weights only; a pickle that would run code is refused without running it."""
import os
import pickle

import pytest
import torch

from advrp2k.models.checkpoints import check_classes, load_checkpoint, save_model
from advrp2k.core.errors import CheckpointError
from advrp2k.models.factory import create_model


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PAYLOAD_MARKER']}",))


def _malicious(tmp_path):
    marker = tmp_path / "pwned"
    os.environ["PAYLOAD_MARKER"] = str(marker)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {}, "classes": ["a"], "arch": "smallcnn", "x": Payload()}, f)
    return path, marker


def test_roundtrip(tmp_path):
    model = create_model("smallcnn", 3)
    path = save_model(tmp_path / "m.safetensors", model, {"arch": "smallcnn", "classes": ["a", "b", "c"]})
    state, record = load_checkpoint(path)
    assert record["classes"] == ["a", "b", "c"]
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_plain_torch_weights_file_is_accepted(tmp_path):
    model = create_model("smallcnn", 2)
    path = tmp_path / "m.pt"
    torch.save({"state_dict": model.state_dict(), "classes": ["x", "y"], "arch": "smallcnn"}, path)
    assert load_checkpoint(path)[1]["classes"] == ["x", "y"]


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    path, marker = _malicious(tmp_path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_safetensors_is_named(tmp_path):
    path = save_model(tmp_path / "m.safetensors", create_model("smallcnn", 2), {"arch": "smallcnn", "classes": ["a", "b"]})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_class_list_mismatch_fails():
    with pytest.raises(CheckpointError, match="another class list"):
        check_classes({"classes": ["a", "b"]}, ["a", "c"], "m.safetensors")
    with pytest.raises(CheckpointError, match="another order"):
        check_classes({"classes": ["b", "a"]}, ["a", "b"], "m.safetensors")
