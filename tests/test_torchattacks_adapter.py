"""The torchattacks adapter and attack options from the command line."""
import json

import pytest
import torch
from click.testing import CliRunner

from advrp2k import create_attack, parse_eps
from advrp2k.cli import cli
from advrp2k.core.errors import PluginError
from advrp2k.eval.evaluator import AttackSpec, evaluate
from conftest import tiny_cnn

CPU = torch.device("cpu")
FAST = ["--epochs", "1", "--image-size", "16"]


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 8, 8, generator=g) * 255).to(torch.uint8), torch.randint(0, 4, (n,), generator=g)


def test_ta_pgd_and_our_pgd_agree_within_noise():
    x, y = _data()
    model = tiny_cnn(seed=1).eval()
    eps = [parse_eps("4/255"), parse_eps("8/255")]
    ours = evaluate(model, x, y, [AttackSpec("pgd", {"steps": 10, "step_size": 2 / 255})], eps, CPU,
                    sanity_checks=False).robust_acc()
    theirs = evaluate(model, x, y, [AttackSpec("ta:PGD", {"steps": 10, "alpha": 2 / 255})], eps, CPU,
                      sanity_checks=False).robust_acc()
    clean = evaluate(model, x, y, [AttackSpec("fgsm")], eps, CPU, sanity_checks=False).clean_acc()
    assert ours["8/255"] < clean  # the attacks have something to do
    for k in ours:
        assert abs(ours[k] - theirs[k]) <= 3 / len(y), (k, ours[k], theirs[k])


def test_ta_attack_keeps_the_contract():
    x, y = _data(16)
    model = tiny_cnn(seed=2).train()
    attack = create_attack("ta:MIFGSM", "8/255", steps=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = attack(model, x.float() / 255, y, index=torch.arange(16))
    assert model.training  # its own eval/train switching does not leak
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (res.x_adv - x.float() / 255).abs().max() <= 8 / 255 + 1e-6
    with torch.no_grad():
        model.eval()
        assert ((model(res.x_adv).argmax(1) != y) == res.fooled).all()  # claims are what the model says
    assert attack.config()["name"] == "ta:MIFGSM" and attack.config()["implementation"].startswith("torchattacks")


def test_targeted_torchattacks_use_at_most_nine_targets(monkeypatch):
    """torchattacks' n_classes means targets + 1: with 30 classes it must be 10, never 30."""
    import torchattacks

    import functools

    seen = {}
    original = torchattacks.APGDT.__init__

    @functools.wraps(original)  # keeps the signature the adapter inspects
    def spy(self, model, **kw):
        seen.update(kw)
        original(self, model, **kw)

    monkeypatch.setattr(torchattacks.APGDT, "__init__", spy)
    x, y = _data(4)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 30)).eval()
    create_attack("ta:APGDT", "8/255", steps=2)(model, x.float() / 255, y % 30)
    assert seen["n_classes"] == 10


def test_torchattacks_attack_of_no_threat_model_or_another_is_refused(tmp_path):
    with pytest.raises(PluginError, match="L2 without a budget.*which no advrp2k threat model is"):
        create_attack("ta:CW", "8/255")
    result = CliRunner().invoke(cli, ["eval", "--defense", "standard", "--attacks", "pgd,ta:PGDL2",
                                      "--leaderboard", str(tmp_path)])
    assert result.exit_code != 0 and "ta:PGDL2 does not serve threat model linf (it serves l2)" in result.output
    assert "Traceback" not in result.output


def test_attack_arg_changes_the_recorded_config(tiny_synth, tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--defense", "standard", "--dataset", "rp2k_synth", "--data",
                                      str(tiny_synth), *FAST, "--attacks", "pgd,ta:MIFGSM",
                                      "--attack-arg", "pgd.steps=3", "--attack-arg", "ta:MIFGSM.decay=0.5",
                                      "--leaderboard", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    entry = json.loads(next((tmp_path / "entries").rglob("*.json")).read_text())
    pgd = [a for a in entry["attacks"] if a["name"] == "pgd"]
    mi = [a for a in entry["attacks"] if a["name"] == "ta:MIFGSM"]
    assert pgd and all(a["steps"] == 3 for a in pgd) and all(a["decay"] == 0.5 for a in mi)


@pytest.mark.parametrize("arg, says", [("pgd.steps=abc", "must be an integer"), ("square.queries=5", "name it in --attacks"),
                                      ("steps=3", "NAME.KEY=VALUE"), ("pgd.stpes=3", "has no option 'stpes'")])
def test_bad_attack_args_are_refused_before_any_work(arg, says, isolated_home, tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--defense", "standard", "--attack-arg", arg,
                                      "--leaderboard", str(tmp_path)])
    assert result.exit_code == 2 and says in result.output, result.output
    assert not (isolated_home / "datasets").exists()
