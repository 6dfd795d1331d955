"""The attack contract, and PGD against closed-form answers. Parametrized over every registered
attack, so a new attack plugin is tested the moment it registers."""
import pytest
import torch

from advrp2k import ATTACKS, create_attack
from advrp2k.plugins.attack import Attack, AttackResult
from advrp2k.core.errors import AttackContractError
from helpers import random_batch
from conftest import LinearModel, tiny_cnn

EPS = 8 / 255




def _fast(name):
    return {"pgd": {"steps": 5}, "pgd_cw": {"steps": 5}, "apgd_ce": {"steps": 10}, "apgd_t": {"steps": 10},
            "autoattack": {"apgd_steps": 10, "square_queries": 100}, "square": {"queries": 100},
            "patch_pgd": {"steps": 5, "locations": 1}, "patch_rs": {"queries": 50}}.get(name, {})


def _attack(name, linf_eps="8/255"):
    """The attack under its first threat model (l_inf when it serves it), at a budget of that model."""
    from advrp2k.core.threat import threat_model

    threats = getattr(ATTACKS.get(name), "threats", ("linf",))
    threat = "linf" if "linf" in threats else threats[0]
    eps = linf_eps if threat == "linf" else threat_model(threat).default_budgets()[-1]
    return create_attack(name, eps, threat=threat, **_fast(name))


@pytest.mark.parametrize("name", ATTACKS.names())
def test_stays_in_ball_and_box(name):
    from advrp2k.core.threat_sets import distances

    model, (x, y) = tiny_cnn(), random_batch(16)
    attack = _attack(name)
    res = attack(model, x, y, index=torch.arange(16))
    assert res.x_adv.shape == x.shape and res.fooled.dtype == torch.bool
    if attack.threat.geometry != "shelf":  # shelf points are re-generated instead (tests/test_threats.py)
        assert float(distances(attack.threat, x, res.x_adv).max()) <= attack.eps.value + 1e-6
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize("train_mode", [True, False])
def test_restores_mode_and_takes_no_weight_gradients(name, train_mode):
    model, (x, y) = tiny_cnn(), random_batch(16)
    model.train(train_mode)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _attack(name)(model, x, y)
    assert model.training is train_mode
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched


@pytest.mark.parametrize("name", ATTACKS.names())
def test_fooled_flags_are_true(name):
    """Every example flagged fooled is misclassified at its returned point."""
    model, (x, y) = tiny_cnn(), random_batch(32)
    res = _attack(name, "16/255")(model.eval(), x, y)
    with torch.no_grad():
        wrong = model(res.x_adv).argmax(1) != y
    assert (wrong | ~res.fooled).all()


def _closed_form_robust(model, x, y, eps):
    """Two-class linear model: the worst point moves each pixel by eps against the margin (clipped to the box)."""
    w, b = model.fc.weight.detach(), model.fc.bias.detach()
    d = (w[y] - w[1 - y])  # per-example margin direction
    xf = x.flatten(1)
    worst = (xf - eps * d.sign()).clamp(0, 1)
    margin = lambda z: (z * d).sum(1) + b[y] - b[1 - y]  # noqa: E731
    return (margin(xf) > 0) & (margin(worst) > 0)


@pytest.mark.parametrize("eps", [0.01, 0.03, 0.08])
def test_pgd_matches_closed_form_on_linear_model(eps):
    torch.manual_seed(0)
    model = LinearModel(48, seed=1)
    x = torch.rand(400, 3, 4, 4)
    y = (model(x).argmax(1) + (torch.rand(400) < 0.2).long()) % 2  # some clean errors too
    expected = _closed_form_robust(model, x, y, eps)
    clean = model(x).argmax(1) == y
    res = create_attack("pgd", eps, steps=10)(model, x, y)
    measured = clean & ~res.fooled
    assert 0 < expected.sum() < clean.sum()  # the case is not trivial
    assert torch.equal(measured, expected)


def test_best_so_far_counts_a_point_visited_mid_run():
    """A model fooled only in a thin shell is fooled once PGD passes through the shell, even if it leaves it."""

    class Shell(torch.nn.Module):
        def forward(self, x):
            d = (x - 0.5).abs().amax(dim=(1, 2, 3))
            wrong = ((d > 0.015) & (d < 0.025)).float()
            # gradient always pushes outward; class 1 only inside the shell
            s = (x - 0.5).flatten(1).sum(1)
            return torch.stack([s * 0 + 1 - 2 * wrong + 0 * s, 2 * wrong + s * 1e-3], 1)

    x = torch.full((4, 3, 2, 2), 0.5)
    y = torch.zeros(4, dtype=torch.long)
    res = create_attack("pgd", 0.1, steps=10, step_size=0.01, random_start=False)(Shell(), x, y)
    assert res.fooled.all()


def test_eps_zero_changes_nothing():
    model, (x, y) = tiny_cnn().eval(), random_batch(16)
    res = create_attack("pgd", 0.0, steps=3)(model, x, y)
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
    assert torch.equal(res.x_adv, x) and torch.equal(res.fooled, clean_wrong)


def test_attack_outside_ball_is_rejected():
    class Cheat(Attack):
        def perturb(self, model, x, y, init=None, generator=None):
            return AttackResult((x + 2 * self.eps.value).clamp(0, 1), torch.ones(len(x), dtype=torch.bool))

    model, (x, y) = tiny_cnn(), random_batch(16)
    with pytest.raises(AttackContractError, match="outside the eps-ball"):
        Cheat("8/255")(model, x * 0.5, y)


def test_normalised_inputs_are_rejected():
    model, (x, y) = tiny_cnn(), random_batch(16)
    with pytest.raises(AttackContractError, match=r"outside \[0, 1\]"):
        create_attack("pgd", "8/255")(model, (x - 0.5) / 0.25, y)


def test_restarts_and_seed_are_deterministic():
    model, (x, y) = tiny_cnn().eval(), random_batch(32)
    a = create_attack("pgd", "4/255", steps=3, restarts=2, seed=5)(model, x, y)
    b = create_attack("pgd", "4/255", steps=3, restarts=2, seed=5)(model, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.fooled, b.fooled)


def test_refill_keeps_a_batch_in_flight_and_matches_one_big_batch():
    model, (x, y) = tiny_cnn(seed=1).eval(), random_batch(64)
    sizes = []
    hook = model.register_forward_pre_hook(lambda m, inp: sizes.append(len(inp[0])))
    small = create_attack("pgd", "8/255", steps=10, random_start=False, restarts=2)
    small.max_active = 8
    a = small(model, x, y)
    hook.remove()
    big = create_attack("pgd", "8/255", steps=10, random_start=False, restarts=2)(model, x, y)
    assert max(sizes) <= 8 and torch.equal(a.fooled, big.fooled) and torch.allclose(a.x_adv, big.x_adv)
    assert 0 < int(a.fooled.sum()) < 64
    # freed slots are refilled: batches stay full until the queue runs dry
    assert sum(s == 8 for s in sizes) >= len(sizes) - 11
