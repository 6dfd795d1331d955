"""The evaluation engine: resume, refusal, per-attack numbers, cascade, and the sanity flags."""
import pytest
import torch

from advrp2k import parse_eps
from advrp2k.core.errors import UsageError
from advrp2k.eval.state import EvalState
from advrp2k.eval.evaluator import AttackSpec, evaluate
from helpers import random_batch
from conftest import tiny_cnn

CPU = torch.device("cpu")
EPS = [parse_eps("4/255"), parse_eps("8/255")]
DET_PGD = AttackSpec("pgd", {"steps": 5, "random_start": False})




def _header(**over):
    return {"model": "tiny", "eps": ["4/255", "8/255"], **over}


def test_interrupted_evaluation_resumes_to_the_same_result(tmp_path, monkeypatch):
    x, y = random_batch(64, uint8=True)
    model = tiny_cnn(seed=1)
    reference = evaluate(model, x, y, [DET_PGD], EPS, CPU, batch_size=2)
    from advrp2k.attacks.pgd import PGD

    calls = {"n": 0}
    original = PGD.perturb

    def flaky(self, *a, **k):
        calls["n"] += self.eps.value <= 8 / 255  # the sanity checks' own PGD at eps 0.5 does not count
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(PGD, "perturb", flaky)
    path = tmp_path / "examples.json"
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, x, y, [DET_PGD], EPS, CPU, batch_size=2, state=EvalState(path, _header()))
    saved = EvalState(path, _header())
    kept = sum(len(s["done"]) for s in saved.stages.values())
    assert not saved.complete and 0 < kept < reference.counts["attacked_examples"]  # two batches kept
    attacked = []

    def counting(self, model, x, *a, **k):
        attacked.append(len(x) if self.eps.value <= 8 / 255 else 0)
        return original(self, model, x, *a, **k)

    monkeypatch.setattr(PGD, "perturb", counting)
    resumed = evaluate(model, x, y, [DET_PGD], EPS, CPU, batch_size=2, state=EvalState(path, _header()))
    assert resumed.robust_acc() == reference.robust_acc()
    # Finished batches were not attacked again, yet the counts cover the whole evaluation.
    assert resumed.counts == reference.counts
    resumed_work = sum(attacked)
    attacked.clear()
    evaluate(model, x, y, [DET_PGD], EPS, CPU, batch_size=2)  # the same work, uninterrupted
    assert resumed_work == sum(attacked) - kept
    assert EvalState(path, _header()).complete


def test_resuming_an_unfinished_run_with_another_config_is_refused(tmp_path):
    x, y = random_batch(16, uint8=True)
    path = tmp_path / "examples.json"
    unfinished = EvalState(path, _header())
    unfinished.record("0:pgd@4/255", [0, 1], [1])
    with pytest.raises(UsageError, match=r"unfinished .*another eps.*refusing"):
        EvalState(path, _header(eps=["8/255"]))
    evaluate(tiny_cnn(), x, y, [DET_PGD], EPS, CPU, state=EvalState(path, _header()))  # same config: resumes
    assert EvalState(path, _header(eps=["8/255"])).stages == {}  # a finished run of another config is replaced


def test_per_attack_numbers_and_worst_case():
    x, y = random_batch(64, uint8=True)
    res = evaluate(tiny_cnn(), x, y, [AttackSpec("fgsm"), AttackSpec("pgd", {"steps": 5})], EPS, CPU)
    assert set(res.per_attack) == {"fgsm", "pgd"}
    for e in ("4/255", "8/255"):
        worst = min(res.per_attack["fgsm"][e], res.per_attack["pgd"][e])
        assert res.robust_acc()[e] <= worst


def test_cascade_attacks_fewer_examples_with_the_same_worst_case():
    x, y = random_batch(64, uint8=True)
    specs = [AttackSpec("pgd", {"steps": 5, "random_start": False}), AttackSpec("fgsm")]
    full = evaluate(tiny_cnn(), x, y, specs, EPS, CPU)
    cascade = evaluate(tiny_cnn(), x, y, specs, EPS, CPU, per_attack=False)
    assert cascade.robust_acc() == full.robust_acc() and cascade.per_attack == {}
    assert cascade.counts["attacked_examples"] < full.counts["attacked_examples"]


def test_larger_eps_only_attacks_survivors_of_the_smaller():
    x, y = random_batch(64, uint8=True)
    res = evaluate(tiny_cnn(), x, y, [DET_PGD], EPS, CPU, sanity_checks=False)  # no check's own attacks
    survivors_4 = int(res.robust["4/255"].sum())
    assert res.counts["attacked_examples"] == int(res.clean_correct.sum()) + survivors_4


def test_gradient_masking_is_caught_by_random_search():
    class Masked(torch.nn.Module):
        """Classifies through a detached copy: zero gradients, yet easy to fool by search."""

        def __init__(self):
            super().__init__()
            self.net = tiny_cnn(seed=2)

        def forward(self, x):
            return self.net(x.detach()) + 0 * x.sum()

    x, y = random_batch(96, uint8=True)
    with torch.no_grad():
        y = Masked()(x.float() / 255).argmax(1)  # every example correct clean
    specs = [AttackSpec("pgd", {"steps": 3, "random_start": False}), AttackSpec("square", {"queries": 300})]
    res = evaluate(Masked(), x, y, specs, [parse_eps("16/255")], CPU)
    checks = {f["check"] for f in res.flags}
    assert "white-box beats random search" in checks and "usable gradients" in checks


def test_unconverged_attack_is_flagged():
    x, y = random_batch(96, uint8=True)
    model = tiny_cnn(seed=3)
    weak = AttackSpec("pgd", {"steps": 1, "step_size": 4 / 255, "random_start": False})
    res = evaluate(model, x, y, [weak], [parse_eps("16/255")], CPU)
    assert any(f["check"] == "convergence" for f in res.flags)
    strong = evaluate(model, x, y, [AttackSpec("pgd", {"steps": 20})], [parse_eps("16/255")], CPU)
    assert not any(f["check"] == "convergence" for f in strong.flags)


def test_autoattack_is_at_least_as_strong_as_pgd_here():
    x, y = random_batch(48, uint8=True)
    specs = [AttackSpec("pgd", {"steps": 10}), AttackSpec("autoattack", {"apgd_steps": 20, "square_queries": 200})]
    res = evaluate(tiny_cnn(seed=4), x, y, specs, [parse_eps("8/255")], CPU)
    assert res.per_attack["autoattack"]["8/255"] <= res.per_attack["pgd"]["8/255"]


def _unconverged_at_the_smaller_eps():
    """A weak PGD (one step of 1/255) beside a random search that fools everything at 255/255:
    the largest eps has no survivors, the smaller one has unconverged ones."""
    x, y = random_batch(96, uint8=True)
    weak = AttackSpec("pgd", {"steps": 1, "step_size": 1 / 255, "random_start": False})
    suite = [weak, AttackSpec("square", {"queries": 20})]
    return tiny_cnn(seed=3), x, y, suite, [parse_eps("8/255"), parse_eps("255/255")]


def test_convergence_is_checked_at_every_eps_with_survivors(tmp_path):
    model, x, y, suite, eps = _unconverged_at_the_smaller_eps()
    state = EvalState(tmp_path / "state.json", {"test": 1})
    res = evaluate(model, x, y, suite, eps, CPU, escalate=False, state=state)
    assert res.robust_acc()["255/255"] == 0  # nothing to check there: the old check looked only here
    flags = [f for f in res.flags if f["check"] == "convergence"]
    assert len(flags) == 1 and "at 8/255" in flags[0]["detail"]
    record = res.convergence["per_eps"]["8/255"]
    assert set(res.convergence["per_eps"]) == {"8/255"} and record["fooled"] >= 1
    # The points it found count: robust accuracy is the survivors less what it fooled...
    assert int(res.robust["8/255"].sum()) == record["survivors"] - record["fooled"]
    before = min(res.per_attack["pgd"]["8/255"], res.per_attack["square"]["8/255"])
    assert res.robust_acc()["8/255"] < before
    # ... and the per-example results say the same (they are what analyses and the entry's check read).
    from advrp2k.analysis.results import frame

    data = {**state.as_dict(), "context": {"labels": y.tolist()}}
    df = frame(data)
    assert df["robust@8/255"].tolist() == res.robust["8/255"].tolist()
    # The check's attacks are recorded with the check, not as the suite's.
    assert [c["name"] for c in res.attacks] == ["pgd", "pgd", "square", "square"]
    assert res.convergence["ran"] and all(c["restarts"] == 2 for c in res.convergence["ran"])


def test_a_point_found_at_a_smaller_eps_counts_at_every_larger_one():
    x, y = random_batch(96, uint8=True)
    weak = AttackSpec("pgd", {"steps": 1, "step_size": 1 / 255, "random_start": False})
    res = evaluate(tiny_cnn(seed=3), x, y, [weak], [parse_eps("8/255"), parse_eps("255/255")], CPU,
                   escalate=False)
    per_eps = res.convergence["per_eps"]
    assert per_eps["8/255"]["fooled"] >= 1
    assert not (res.robust["255/255"] & ~res.robust["8/255"]).any()  # nested
    assert per_eps["255/255"]["survivors"] <= int(res.robust["8/255"].sum())
