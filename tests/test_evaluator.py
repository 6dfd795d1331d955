"""The evaluator's guarantees and its integrity checks."""
import pytest
import torch

from advrp2k import parse_eps
from advrp2k.eval.checks import state_digest
from advrp2k.core.errors import IntegrityError
from advrp2k.eval.evaluator import AttackSpec, evaluate
from helpers import random_batch
from conftest import tiny_cnn

CPU = torch.device("cpu")
EPS = [parse_eps("4/255"), parse_eps("8/255")]
PGD = [AttackSpec("pgd", {"steps": 5})]




class Planted(torch.nn.Module):
    """Correct only on the exact clean inputs it memorised: every example has an adversarial point in the ball."""

    def __init__(self, x_clean):
        super().__init__()
        self.register_buffer("clean", x_clean.float().div(255).flatten(1))

    def forward(self, x):
        is_clean = (x.flatten(1)[:, None] - self.clean[None]).abs().amax(2).amin(1) < 1e-6
        logits = torch.zeros(len(x), 4) + 0 * x.sum()
        return logits + torch.where(is_clean, 1.0, -1.0)[:, None] * torch.tensor([1.0, 0, 0, 0])


def test_robust_le_clean_and_monotone():
    x, y = random_batch(48, uint8=True)
    model = tiny_cnn().eval()
    res = evaluate(model, x, y, PGD, EPS, CPU, batch_size=16)
    r = res.robust_acc()
    assert r["8/255"] <= r["4/255"] <= res.clean_acc()
    assert not (res.robust["4/255"] & ~res.clean_correct).any()


def test_eps_zero_gives_clean_accuracy():
    x, y = random_batch(48, uint8=True)
    res = evaluate(tiny_cnn(), x, y, PGD, [parse_eps("0", allow_zero=True)], CPU)
    assert res.robust_acc()["0/255"] == res.clean_acc()


def test_clean_misclassified_are_never_attacked():
    x, y = random_batch(64, uint8=True)
    res = evaluate(tiny_cnn(), x, y, PGD, EPS[:1], CPU, sanity_checks=False)  # the suite's own work only
    n_correct = int(res.clean_correct.sum())
    assert res.counts["attack_forwards"] <= n_correct * (5 + 1)
    assert all(f == "clean" for f, c in zip(res.fooled_by, res.clean_correct) if not c)


def test_train_mode_model_is_evaluated_in_eval_mode_and_bn_stats_unchanged():
    x, y = random_batch(48, uint8=True)
    model = tiny_cnn().train()
    digest = state_digest(model)
    res_train_mode = evaluate(model, x, y, PGD, EPS, CPU)
    assert model.training and state_digest(model) == digest
    res_eval_mode = evaluate(model.eval(), x, y, PGD, EPS, CPU)
    assert torch.equal(res_train_mode.clean_correct, res_eval_mode.clean_correct)


def test_model_that_changes_its_state_fails():
    class Drifting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(192, 4)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls += 1
            return self.lin(x.flatten(1))

    x, y = random_batch(48, uint8=True)
    with pytest.raises(IntegrityError, match="eval mode"):
        evaluate(Drifting(), x, y, PGD, EPS, CPU)


def test_planted_vulnerability_is_fully_broken():
    x, y = random_batch(48, uint8=True)
    y[:] = 0
    res = evaluate(Planted(x), x, y, [AttackSpec("pgd", {"steps": 3})], EPS, CPU)
    assert res.clean_acc() == 1.0 and res.robust_acc()["4/255"] == 0.0


def test_zero_gradient_model_is_flagged():
    class Quantised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_cnn()

        def forward(self, x):
            q = torch.round(x * 4) / 4  # zero gradient almost everywhere
            return self.net(q)

    x, y = random_batch(48, uint8=True)
    res = evaluate(Quantised(), x, y, PGD, EPS, CPU)
    assert any(f["check"] == "usable gradients" for f in res.flags)


def test_probability_outputs_are_flagged():
    class Probs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_cnn()

        def forward(self, x):
            return self.net(x).softmax(1)

    x, y = random_batch(48, uint8=True)
    res = evaluate(Probs(), x, y, PGD, EPS, CPU)
    assert any(f["check"] == "logits, not probabilities" for f in res.flags)


def test_honest_model_is_not_flagged():
    x, y = random_batch(48, uint8=True)
    res = evaluate(tiny_cnn(), x, y, PGD, EPS, CPU)
    assert res.flags == []


def test_batch_size_does_not_change_results():
    x, y = random_batch(40, uint8=True)
    a = evaluate(tiny_cnn(), x, y, PGD, EPS, CPU, batch_size=7)
    b = evaluate(tiny_cnn(), x, y, PGD, EPS, CPU, batch_size=40)
    assert torch.equal(a.clean_correct, b.clean_correct)
    assert a.robust_acc() == pytest.approx(b.robust_acc(), abs=2 / 40)
