"""Self-correcting evaluation: randomized defenses get the randomized protocol, and a flag runs
the attack that settles it, so the number written is the one that holds."""
import json

import pytest
import torch
from click.testing import CliRunner

import advrp2k
from advrp2k import parse_eps
from advrp2k.plugins.registry import DEFENSES, register_defense
from advrp2k.cli import cli
from advrp2k.eval.evaluator import AttackSpec, evaluate
from conftest import LinearModel, tiny_cnn

CPU = torch.device("cpu")
EPS = [parse_eps("4/255"), parse_eps("8/255")]
PGD = [AttackSpec("pgd", {"steps": 10})]


def _images(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 8, 8, generator=g) * 255).to(torch.uint8)


def _own_labels(model, x):
    """Label each image with the model's own clean prediction: every example starts correct."""
    with torch.no_grad():
        return model.eval()(x.float() / 255).argmax(1)


class GaussianNoise(torch.nn.Module):
    """A randomized defense: Gaussian noise on the input at every forward pass."""

    def __init__(self, model, sigma=0.05):
        super().__init__()
        self.model, self.sigma = model, sigma

    def forward(self, x):
        return self.model((x + self.sigma * torch.randn_like(x)).clamp(0, 1))


class ScaledLogits(torch.nn.Module):
    """Logits times 1e4: cross-entropy saturates and its input gradient vanishes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) * 1e4


class Quantised(torch.nn.Module):
    """Input quantised to 4 levels: the gradient through rounding is exactly zero."""

    def __init__(self, model, levels=4):
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, x):
        return self.model(torch.round(x * self.levels) / self.levels)


def _eot_reference(model, x, y, eps, passes=10):
    """torchattacks' EOT-PGD (an independent implementation), verdict over ``passes`` passes."""
    import torchattacks

    atk = torchattacks.EOTPGD(model, eps=eps, alpha=2.5 * eps / 20, steps=20, eot_iter=10, random_start=True)
    adv = atk(x.float() / 255, y)
    with torch.no_grad():
        wrong = torch.stack([model(adv).argmax(1) != y for _ in range(passes)]).any(0)
        clean_wrong = torch.stack([model(x.float() / 255).argmax(1) != y for _ in range(passes)]).any(0)
    return (~wrong & ~clean_wrong).float().mean().item()


def test_randomized_model_is_evaluated_under_the_randomized_protocol():
    torch.manual_seed(0)
    base = tiny_cnn(seed=2).eval()
    x = _images()
    y = _own_labels(base, x)
    noisy = GaussianNoise(base).eval()
    res = evaluate(noisy, x, y, PGD, EPS, CPU, batch_size=16)
    assert any(f["check"] == "determinism" for f in res.flags)
    assert res.protocol["randomized"] and res.protocol["verdict_passes"] == 10
    assert res.protocol["attacks"] == [{"name": "pgd", "options": {"steps": 10, "eot": 10}}]
    assert all(c.get("eot") == 10 for c in res.attacks)
    torch.manual_seed(1)
    reference = _eot_reference(noisy, x, y, 8 / 255)
    assert res.robust_acc()["8/255"] <= reference + 2 / len(y)


def test_scaled_logits_escalate_to_a_scale_invariant_loss():
    base = tiny_cnn(seed=3).eval()
    x = _images(seed=1)
    y = _own_labels(base, x)
    underlying = evaluate(base, x, y, PGD, EPS, CPU, escalate=False).robust_acc()["8/255"]
    wrapped = ScaledLogits(base).eval()
    masked = evaluate(wrapped, x, y, PGD, EPS, CPU, escalate=False)
    assert any(f["check"] == "usable gradients" for f in masked.flags)
    assert masked.robust_acc()["8/255"] > underlying + 0.2  # the weak number a user would have copied
    fixed = evaluate(wrapped, x, y, PGD, EPS, CPU)
    assert fixed.escalation and "usable gradients" in fixed.escalation["why"]
    assert {"pgd_cw", "apgd_t", "square"} <= {a["name"] for a in fixed.escalation["ran"]}
    assert fixed.escalation["robust_acc_before"] == masked.robust_acc()
    assert fixed.robust_acc()["8/255"] <= underlying + 2 / len(y)
    assert any(f["check"] == "usable gradients" for f in fixed.flags)  # the entry stays marked


def test_input_quantisation_escalates_to_square():
    base = tiny_cnn(seed=4).eval()
    x = _images(seed=2)
    wrapped = Quantised(base).eval()
    y = _own_labels(wrapped, x)
    masked = evaluate(wrapped, x, y, PGD, EPS, CPU, escalate=False)
    fixed = evaluate(wrapped, x, y, PGD, EPS, CPU)
    assert fixed.escalation and "square" in {a["name"] for a in fixed.escalation["ran"]}
    assert fixed.robust_acc()["8/255"] <= masked.robust_acc()["8/255"] - 0.25


def test_honest_model_triggers_no_escalation_and_keeps_its_numbers():
    model = LinearModel(3 * 8 * 8, seed=5, classes=2).eval()
    x = _images(64, seed=3)
    y = _own_labels(model, x)
    with_escalation = evaluate(model, x, y, PGD, EPS, CPU)
    without = evaluate(model, x, y, PGD, EPS, CPU, escalate=False)
    assert with_escalation.flags == [] and with_escalation.escalation is None
    assert with_escalation.robust_acc() == without.robust_acc()
    assert not with_escalation.protocol["randomized"]


@pytest.fixture
def noise_defense():
    @register_defense("test_noise")
    class Noise(advrp2k.TestTimeDefense):
        paper_id = "TestNoise"
        needs_eps = False
        options = {}

        def wrap(self, model):
            return GaussianNoise(model, 0.05)

    yield "test_noise"
    DEFENSES.unregister("test_noise")


def test_randomized_defense_gets_an_entry_from_the_cli(noise_defense, tiny_synth, tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--defense", noise_defense, "--dataset", "rp2k_synth", "--data",
                                      str(tiny_synth), "--epochs", "1", "--image-size", "16",
                                      "--leaderboard", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "randomized protocol" in result.output
    entry = json.loads(next((tmp_path / "entries").rglob("TestNoise_smallcnn.json")).read_text())
    assert entry["unreliable"] and any(f["check"] == "determinism" for f in entry["flags"])
    assert entry["evaluation_protocol"]["randomized"] and entry["evaluation_protocol"]["verdict_passes"] == 10
