"""bf16 attack steps with fp32 verdicts: low precision may speed attacks up, never count an example as fooled."""
import json

import torch
from click.testing import CliRunner

from advrp2k import parse_eps
from advrp2k.cli import cli
from advrp2k.eval.evaluator import AttackSpec, evaluate

CPU = torch.device("cpu")


class NearTie(torch.nn.Module):
    """Two classes whose logits differ by 0.2 at about 96: fp32 separates them, bf16 (spacing 0.5
    there) rounds them to a tie that argmax resolves to the wrong class. Both rows weigh the input
    alike, so no perturbation changes the fp32 decision."""

    def __init__(self, dim):
        super().__init__()
        self.fc = torch.nn.Linear(dim, 2)
        with torch.no_grad():
            self.fc.weight.fill_(16.0 * 12 / dim)
            self.fc.bias.copy_(torch.tensor([0.0, 0.2]))

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_a_bf16_claim_overturned_by_fp32_is_not_counted_as_fooled():
    x = torch.full((10, 3, 2, 2), 0.5)
    y = torch.ones(10, dtype=torch.long)
    model = NearTie(12).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert (model(x).argmax(1) != y).all()  # bf16 alone would call every example fooled
    attack = [AttackSpec("pgd", {"steps": 3, "random_start": False})]
    res = evaluate(model, x, y, attack, [parse_eps("1/255")], CPU, precision="bf16", sanity_checks=False)
    assert res.clean_acc() == 1.0 and res.robust_acc()["1/255"] == 1.0  # fp32 verdicts: nobody fooled
    assert res.precision == {"attacks": "bf16", "verdicts": "fp32", "overturned": 10, "reattacked_in_fp32": 10,
                             "attacked": 10}
    assert any(f["check"] == "low-precision verdicts" for f in res.flags)  # > 1 % overturned: flagged
    fp32 = evaluate(model, x, y, attack, [parse_eps("1/255")], CPU, sanity_checks=False)
    assert fp32.precision["overturned"] == 0 and not fp32.flags


def test_entry_records_precision(tiny_synth, tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--defense", "standard", "--dataset", "rp2k_synth", "--data",
                                      str(tiny_synth), "--epochs", "1", "--image-size", "16", "--precision", "bf16",
                                      "--leaderboard", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    entry = json.loads(next((tmp_path / "entries").rglob("*.json")).read_text())
    assert entry["precision"]["attacks"] == "bf16" and entry["precision"]["verdicts"] == "fp32"
    assert entry["reproducibility"]["train_settings"]["precision"] == "bf16"
    assert isinstance(entry["precision"]["overturned"], int)
