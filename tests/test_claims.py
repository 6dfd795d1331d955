"""Numbers exactly as strong as they claim (issue: correctness review): the ball and box checked by
the engine whatever a plugin does, --seed reaching the attacks, results never replayed across
settings, entries that agree with their per-example files, fp32 verdicts without TF32."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from advrp2k.core.eps import parse_eps
from advrp2k.plugins.registry import ATTACKS, register_attack
from advrp2k.plugins.attack import Attack, AttackResult
from advrp2k.plugins.attack_spec import AttackSpec
from advrp2k.cli import cli
from advrp2k.core.errors import AttackContractError
from advrp2k.eval.evaluator import evaluate
from helpers import random_batch
from conftest import tiny_cnn




@pytest.fixture
def inverting_attack():
    """A plugin that overrides __call__ (skipping the base class's checks) and returns 1 - x."""
    @register_attack("invert_cheat")
    class Invert(Attack):
        def __call__(self, model, x, y, init=None, generator=None, index=None):
            return AttackResult((1 - x).detach(), torch.ones(len(x), dtype=torch.bool), 0, 0)

    yield "invert_cheat"
    ATTACKS.unregister("invert_cheat")


def test_the_engine_checks_the_ball_whatever_the_plugin_does(inverting_attack):
    x, y = random_batch(24)
    model = tiny_cnn()
    with pytest.raises(AttackContractError, match="invert_cheat stepped outside the eps-ball"):
        evaluate(model, x, y, [AttackSpec(inverting_attack)], [parse_eps("8/255")], torch.device("cpu"),
                 sanity_checks=False)


def test_reseeded_adds_the_run_seed_to_declared_seeds_only():
    spec = AttackSpec("pgd", {"steps": 5})
    assert spec.reseeded(0) is spec  # the default run's records are unchanged
    assert spec.reseeded(7).options == {"steps": 5, "seed": 7}
    assert AttackSpec("pgd", {"seed": 1}).reseeded(7).options["seed"] == 8


def _tiny_eval(tmp_path: Path, tiny_synth, *extra) -> dict:
    args = ["eval", "--data", tiny_synth, "--epochs", 1, "--image-size", 12, "--n-examples", 40,
            "--attack-eps", "2/255", "--attack-arg", "pgd.steps=3", "--leaderboard", tmp_path / "lb", *extra]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    entry_path = result.output.strip().splitlines()[-1].removeprefix("wrote ").strip()
    return json.loads(Path(entry_path).read_text(encoding="utf-8"))


def test_seed_reaches_the_attacks_and_is_never_replayed(tiny_synth, tmp_path):
    first = _tiny_eval(tmp_path, tiny_synth)
    again = _tiny_eval(tmp_path, tiny_synth, "--seed", 7)
    assert [a["seed"] for a in first["attacks"]] == [0]
    assert [a["seed"] for a in again["attacks"]] == [7]  # the attack's own draws change with --seed
    examples = tmp_path / "lb" / "examples" / "rp2k_synth" / "linf"
    headers = [json.loads(p.read_text())["header"] for p in examples.glob("*.json")]
    assert {h["seed"] for h in headers} == {7}  # the seed 7 run computed its own results


def test_precision_and_escalation_are_part_of_the_results_key(tiny_synth, tmp_path):
    from advrp2k.jobs.run import attack_library_versions

    _tiny_eval(tmp_path, tiny_synth)
    published = next((tmp_path / "lb" / "examples" / "rp2k_synth" / "linf").glob("*.json"))
    header = json.loads(published.read_text())["header"]
    assert header["precision"] == "fp32" and header["escalate"] is True and header["compile"] is False
    assert header["versions"] == attack_library_versions() and header["versions"]["torchattacks"]
    entry = _tiny_eval(tmp_path, tiny_synth, "--no-escalate")
    assert json.loads(published.read_text())["header"]["escalate"] is False  # recomputed, not replayed
    assert "escalation" not in entry


def test_an_entry_that_disagrees_with_its_per_example_results_is_refused():
    import pandas as pd

    from advrp2k.core.errors import IntegrityError
    from advrp2k.jobs.run import _check_entry_matches

    table = pd.DataFrame({"clean_correct": [True, True, False, False], "robust@8/255": [True, False, False, False]})
    _check_entry_matches({"clean_acc": 0.5, "robust_acc": {"8/255": 0.25}}, table)
    with pytest.raises(IntegrityError, match="entry matches its per-example results"):
        _check_entry_matches({"clean_acc": 0.5, "robust_acc": {"8/255": 0.5}}, table)
    _check_entry_matches({"clean_acc": 0.5, "robust_acc": {"8/255": 0.25, "16/255": 0.0}}, table)  # nothing left
    with pytest.raises(IntegrityError):
        _check_entry_matches({"clean_acc": 0.5, "robust_acc": {"16/255": 0.25}}, table)


def test_verdicts_run_without_tf32_and_restore_it():
    from advrp2k.core.precision import fp32_verdicts

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        seen = []

        class Probe(torch.nn.Module):
            def forward(self, x):
                seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
                return x.flatten(1)[:, :4] * 0

        from advrp2k.eval.evaluator import clean_pass

        x, y = random_batch(4)
        clean_pass(Probe(), x, y, torch.device("cpu"), batch_size=4)
        assert seen and all(s == (False, False) for s in seen)
        with fp32_verdicts():
            pass
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_bf16_on_a_cpu_warns_once(caplog, monkeypatch):
    from advrp2k.core import precision

    monkeypatch.setattr(precision, "_warned_cpu_bf16", False)
    with caplog.at_level(logging.WARNING):
        precision.resolve_precision("bf16", torch.device("cpu"))
        precision.resolve_precision("bf16", torch.device("cpu"))
    assert caplog.text.count("bf16 on a CPU") == 1


def test_the_entry_states_how_each_attack_keyed_its_randomness():
    from advrp2k.jobs.entry_build import random_streams

    assert random_streams([AttackSpec("pgd")]) == "per example: (attack seed, example index, restart)"
    mixed = random_streams([AttackSpec("pgd"), AttackSpec("autoattack")])
    assert "per example for pgd" in mixed and "per batch for autoattack" in mixed


REPO = Path(__file__).resolve().parents[1]


def test_a_partial_evaluation_is_shown_apart_and_never_tops_the_board(tmp_path):
    import shutil

    from advrp2k.board.ranking import ranked_table

    lb = tmp_path / "lb"
    shutil.copytree(REPO / "leaderboard" / "entries", lb / "entries")
    shutil.copytree(REPO / "leaderboard" / "examples", lb / "examples")
    folder = lb / "entries" / "rp2k_synth" / "linf"
    partial = json.loads((folder / "Standard_smallcnn.json").read_text(encoding="utf-8"))
    partial.update({"model_id": "Partial_smallcnn", "n_examples": 100, "clean_acc": 0.95,
                    "robust_acc": {"4/255": 0.9, "8/255": 0.9}})
    partial.pop("ci95", None)
    (folder / "Partial_smallcnn.json").write_text(json.dumps(partial), encoding="utf-8")
    table = ranked_table(lb, [json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")])
    row = table.set_index("model_id").loc["Partial_smallcnn"]
    assert pd_isna(row["rank"]) and row["not_ranked_because"] == "partial evaluation: 100 of 438 test images"
    ranked = table[table["rank"].notna()].sort_values("rank")
    assert ranked["model_id"].tolist() == ["Madry2018Towards_smallcnn_eps8-255", "Standard_smallcnn"]
    assert ranked["rank_ci95_low"].notna().all()  # statistics over exactly the ranked list shown


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_a_subset_entry_never_stands_for_the_whole_split(tiny_synth, tmp_path):
    from advrp2k.jobs.job import Job
    from advrp2k.jobs.run import run_eval
    from advrp2k.jobs.protocols import get_protocol

    def job(**kw):
        return Job("standard", get_protocol("quick").override(epochs=1, image_size=12), data=tiny_synth,
                   attacks=[AttackSpec("pgd", {"steps": 3, "restarts": 1})], attack_eps=[parse_eps("2/255")],
                   leaderboard=tmp_path / "lb", **kw)

    first = run_eval(job(n_examples=10))
    assert first["entry"]["n_examples"] == 10 and first["entry"]["data"]["n_test"] > 10
    whole = run_eval(job(reuse_entry=True))  # what reproduce table5 asks for
    assert not whole.get("reused") and whole["entry"]["n_examples"] == first["entry"]["data"]["n_test"]
    again = run_eval(job(reuse_entry=True))
    assert again.get("reused")  # the whole-split entry is reused, as it should be


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch before 2.4
        return torch.is_autocast_cpu_enabled()


@pytest.fixture
def bf16_liar():
    """PGD, except that under bf16 autocast it claims every example fooled at its clean point."""
    from advrp2k.plugins.attack import create_attack

    @register_attack("bf16_liar")
    class Liar(Attack):
        refills = True

        def perturb(self, model, x, y, init=None, generator=None):
            if _autocast_on():
                return AttackResult(x.clone(), torch.ones(len(x), dtype=torch.bool), len(x), 0)
            pgd = create_attack("pgd", self.eps, steps=5)
            pgd.example_index = self.example_index
            return pgd.perturb(model, x, y, init=init, generator=generator)

    yield "bf16_liar"
    ATTACKS.unregister("bf16_liar")


def test_bf16_claims_that_fp32_rejects_are_attacked_again_in_fp32(bf16_liar):
    x, y = random_batch(32)
    model = tiny_cnn().eval()
    run = lambda precision: evaluate(model, x, y, [AttackSpec(bf16_liar)], [parse_eps("8/255")],
                                     torch.device("cpu"), sanity_checks=False, precision=precision)
    fp32, bf16 = run("fp32"), run("bf16")
    assert torch.equal(bf16.robust["8/255"], fp32.robust["8/255"])  # nothing left robust by a bf16 artefact
    assert 0 < fp32.robust["8/255"].sum() < fp32.clean_correct.sum()  # a test that can tell the two apart
    rec = bf16.precision
    assert rec["overturned"] == rec["reattacked_in_fp32"] == int(fp32.clean_correct.sum()) == rec["attacked"]
    assert any(f["check"] == "low-precision verdicts" and "100.0% of the" in f["detail"] for f in bf16.flags)


def test_pgd_without_early_stop_is_refused_by_an_evaluation_before_any_work(tiny_synth, tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--data", str(tiny_synth), "--attack-arg", "pgd.early_stop=False",
                                      "--attack-arg", "pgd.restarts=5", "--leaderboard", str(tmp_path / "lb")])
    assert result.exit_code == 2 and "early_stop=False is adversarial training's mode" in result.output
    assert not (tmp_path / "home").exists() or not list((tmp_path / "home").rglob("model.safetensors"))
    with pytest.raises(Exception, match="early_stop=False"):
        evaluate(tiny_cnn(), *random_batch(24), [AttackSpec("pgd", {"early_stop": False})], [parse_eps("8/255")],
                 torch.device("cpu"), sanity_checks=False)


def test_autoattack_with_other_steps_follows_the_reference_schedule():
    from advrp2k.core.compat import autoattack_module
    from advrp2k.plugins.attack import create_attack

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    aa = create_attack("autoattack", "8/255", apgd_steps=1000).build(model, torch.rand(2, 3, 2, 2))
    reference = autoattack_module().autopgd_base.APGDAttack(model, n_iter=1000, eps=8 / 255, device="cpu")
    for apgd in (aa.apgd, aa.apgd_targeted):
        assert (apgd.n_iter, apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr) == (1000, 220, 60, 30)
        assert (apgd.n_iter_2, apgd.n_iter_min, apgd.size_decr) == \
            (reference.n_iter_2, reference.n_iter_min, reference.size_decr)


class _NeverFooled(torch.nn.Module):
    """Class 0 wins by a margin no eps-ball can close, so every PGD step runs."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 8 * 8, 4)
        with torch.no_grad():
            self.fc.bias.copy_(torch.tensor([100.0, 0.0, 0.0, 0.0]))

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_counts_come_from_hooks_on_the_model():
    x, _ = random_batch(12)
    y = torch.zeros(12, dtype=torch.long)
    res = evaluate(_NeverFooled(), x, y, [AttackSpec("pgd", {"steps": 5})], [parse_eps("8/255")],
                   torch.device("cpu"), sanity_checks=False)
    assert res.counts["attack_forwards"] == 12 * 6 and res.counts["attack_backwards"] == 12 * 5


def test_autoattack_work_is_counted(monkeypatch):
    x, y = random_batch(8)
    spec = AttackSpec("autoattack", {"apgd_steps": 3, "square_queries": 5})
    res = evaluate(tiny_cnn(), x, y, [spec], [parse_eps("8/255")], torch.device("cpu"), sanity_checks=False)
    assert res.counts["attack_forwards"] > 0 and res.counts["attack_backwards"] > 0


def test_the_randomized_protocol_is_rankable_and_standard_entries_stay_ranked():
    from advrp2k.board.ranking import is_ranked

    entry = json.loads((REPO / "leaderboard/entries/rp2k_synth/linf/Madry2018Towards_smallcnn_eps8-255.json")
                       .read_text(encoding="utf-8"))
    assert is_ranked(entry)
    rand = json.loads(json.dumps(entry))
    for a in rand["attacks"]:
        if a["name"] == "autoattack":
            a["version"] = "rand"
    assert not is_ranked(rand)  # "rand" on a deterministic model is not the ranking suite
    rand["evaluation_protocol"] = {"randomized": True, "verdict_passes": 10}
    assert is_ranked(rand)  # the evaluator's own protocol for a randomized defense is


def test_entries_of_trained_defenses_record_the_batchnorm_mode_of_training_attacks(tiny_synth, tmp_path):
    entry = _tiny_eval(tmp_path, tiny_synth, "--defense", "madry", "--eps", "2/255", "--defense-arg", "steps=1")
    assert entry["reproducibility"]["training_attacks_batchnorm"].startswith("eval")
    assert "training_attacks_batchnorm" not in _tiny_eval(tmp_path, tiny_synth)["reproducibility"]
