"""Threat models (issue: retail's own threats): the l2 ball, ticket switching, and their place on
the command line, in entries and on the boards."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from advrp2k.core.errors import AttackContractError, IntegrityError, UsageError
from advrp2k.core.threat import parse_threats, threat_model
from advrp2k.core.threat_sets import check_point, distances
from advrp2k.eval.evaluator import evaluate
from advrp2k.core.packs import pack_amount, smaller_pack
from advrp2k.eval.siblings import SiblingGoal
from advrp2k.plugins.attack import Attack, AttackResult, create_attack
from advrp2k.plugins.attack_spec import AttackSpec
from advrp2k.plugins.registry import ATTACKS, register_attack
from conftest import tiny_cnn
from helpers import invoke, random_batch

L2 = threat_model("l2")


def test_budgets_parse_per_threat_model():
    assert L2.parse_budget("0.5").label == "0.5" and L2.parse_budget("3").value == 3.0
    assert [e.label for e in L2.default_budgets(32)] == ["0.25", "0.5"]
    assert [e.label for e in L2.default_budgets(224)] == ["1.5", "3"]
    assert threat_model("switch").parse_budget("8/255").label == "8/255"
    with pytest.raises(UsageError, match="did you mean l2"):
        threat_model("l3")
    with pytest.raises(UsageError, match="not a number"):
        L2.parse_budget("half")
    assert [t.name for t in parse_threats("l2, linf,l2")] == ["l2", "linf"]


def test_l2_pgd_never_leaves_its_ball_in_float64():
    model, (x, y) = tiny_cnn().eval(), random_batch(32, size=8)
    for eps in ("0.1", "0.5", "2"):
        res = create_attack("pgd", eps, threat="l2", steps=10)(model, x, y, index=torch.arange(32))
        d = distances(L2, x, res.x_adv)
        assert float(d.max()) <= float(eps) + 1e-6
        assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    # the l2 attack is stronger than nothing: at eps 2 it fools some of what the clean model gets right
    with torch.no_grad():
        right = model(x).argmax(1) == y
    assert bool((res.fooled & right).any())


def test_the_l2_check_rejects_a_point_inside_the_linf_ball_but_outside_the_l2_ball():
    x = torch.full((2, 3, 8, 8), 0.5)
    x_adv = x + 8 / 255  # l_inf 0.031, l2 0.031 * sqrt(192) = 0.43
    eps = L2.parse_budget("0.25")
    with pytest.raises(AttackContractError, match="outside the l2 ball"):
        check_point(L2, "cheat", eps, x, x_adv)
    check_point(threat_model("linf"), "fine", threat_model("linf").parse_budget("8/255"), x, x_adv)


def test_an_attack_refuses_a_threat_model_it_does_not_serve():
    with pytest.raises(UsageError, match="does not serve threat model 'l2'"):
        create_attack("fgsm", "0.5", threat="l2")
    with pytest.raises(UsageError, match="does not serve threat model 'linf'.*serves l2"):
        create_attack("ta:PGDL2", "8/255")
    attack = create_attack("ta:PGDL2", "0.5", threat="l2", steps=3)
    model, (x, y) = tiny_cnn().eval(), random_batch(8)
    res = attack(model, x, y, index=torch.arange(8))
    assert float(distances(L2, x, res.x_adv).max()) <= 0.5 + 1e-6


class Lines(nn.Module):
    """Four classes, two product lines ({0, 1} and {2, 3}). The logits are fixed offsets plus a
    small multiple of the mean pixel, so an image of class 0 can be pushed to class 2 (not a
    sibling) far more easily than to class 1 (its sibling)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("offsets", torch.tensor([1.0, -5.0, 0.9, -5.0]))
        self.register_buffer("slopes", torch.tensor([-1.0, 0.0, 1.0, 0.0]))

    def forward(self, x):
        m = x.mean((1, 2, 3))[:, None]
        return self.offsets + self.slopes * m * 0.2


LINES = {f"sku{i}": {"brand": "b" + "ab"[i // 2], "product_type": "t", "size": ("250ml", "1L")[i % 2]}
         for i in range(4)}


def test_siblings_come_from_brand_and_product_type_with_a_logit_fallback():
    goal = SiblingGoal([f"sku{i}" for i in range(4)], LINES)
    assert goal.table.tolist() == [[False, True, False, False], [True, False, False, False],
                                   [False, False, False, True], [False, False, True, False]]
    assert goal.smaller[1, 0] and not goal.smaller[0, 1]
    lone = SiblingGoal([f"sku{i}" for i in range(4)], {"sku0": {"brand": "x", "product_type": "t"}}, k=2)
    assert lone.fallback == [0, 1, 2, 3]
    x, y = torch.full((4, 3, 4, 4), 0.5), torch.tensor([0, 1, 2, 3])
    rows = lone.rows(Lines(), x, y, torch.device("cpu"), 4)
    assert rows[0].tolist() == [False, False, True, True]  # class 0's next-ranked classes: 2 (0.9), then 1 / 3
    assert pack_amount("1L") == 1000 and pack_amount("500 g") == 500 and pack_amount("big") is None
    assert smaller_pack("1L", "500ml") and not smaller_pack("500ml", "1L") and not smaller_pack("1L", "big")


def test_ticket_switching_counts_only_a_sibling_prediction():
    """PGD pushes class-0 images to class 2 at a large budget (untargeted: fooled); under ticket
    switching class 2 is not a sibling, and class 1 stays out of reach, so nothing is switched."""
    x, y = torch.full((6, 3, 4, 4), 0.05), torch.zeros(6, dtype=torch.long)
    model, classes = Lines(), [f"sku{i}" for i in range(4)]
    spec = [AttackSpec("pgd", {"steps": 10})]
    budgets = [threat_model("linf").parse_budget("1")]
    untargeted = evaluate(model, x, y, spec, budgets, torch.device("cpu"), sanity_checks=False, escalate=False)
    assert list(untargeted.robust_acc().values()) == [0.0]
    switched = evaluate(model, x, y, [s.under("switch") for s in spec], budgets, torch.device("cpu"),
                        sanity_checks=False, escalate=False, threat="switch", goal=SiblingGoal(classes, LINES))
    assert list(switched.robust_acc().values()) == [1.0]


@pytest.fixture
def claims_any_wrong_class():
    """A switch attack that returns a non-sibling fooling point and claims it as a switch."""
    @register_attack("nonsibling_cheat")
    class Cheat(Attack):
        threats = ("switch",)

        def perturb(self, model, x, y, init=None, generator=None):
            return AttackResult((x + self.eps.value).clamp(0, 1), torch.ones(len(x), dtype=torch.bool))

    yield "nonsibling_cheat"
    ATTACKS.unregister("nonsibling_cheat")


def test_a_claimed_switch_to_a_non_sibling_fails_re_verification(claims_any_wrong_class):
    x, y = torch.full((4, 3, 4, 4), 0.05), torch.zeros(4, dtype=torch.long)
    with pytest.raises(IntegrityError, match="re-verification"):
        evaluate(Lines(), x, y, [AttackSpec(claims_any_wrong_class, threat="switch")],
                 [threat_model("switch").parse_budget("1")], torch.device("cpu"), sanity_checks=False,
                 escalate=False, threat="switch", goal=SiblingGoal([f"sku{i}" for i in range(4)], LINES))


def test_eval_writes_one_entry_per_threat_model(tiny_synth, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVRP2K_HOME", str(tmp_path / "home"))
    result = invoke("eval", "--defense", "standard", "--dataset", "rp2k_synth", "--data", tiny_synth, "--epochs", 2,
                    "--threat", "l2,switch", "--leaderboard", tmp_path / "lb")
    assert result.exit_code == 0, result.output
    l2 = json.loads((tmp_path / "lb/entries/rp2k_synth/l2/Standard_smallcnn.json").read_text())
    switch = json.loads((tmp_path / "lb/entries/rp2k_synth/switch/Standard_smallcnn.json").read_text())
    assert set(l2["robust_acc"]) == {"0.25", "0.5"} and l2["threat"]["geometry"] == "l2"
    assert all(a["threat_model"] == "l2" for a in l2["attacks"])
    assert set(switch["robust_acc"]) == {"1/255", "2/255", "4/255", "8/255", "16/255"}
    assert switch["threat"]["siblings"]["skus_with_line"] == 8
    assert "ticket switching, of" in result.output and "threat model l2" in result.output
    # every switched image went to a sibling of its SKU (same brand and product type)
    from advrp2k.analysis.results import examples

    df = examples(tmp_path / "lb/entries/rp2k_synth/switch/Standard_smallcnn.json")
    fooled = df[df["fooled_by"].notna()]
    assert len(fooled) > 0
    from advrp2k.data.tables import read_attributes

    attrs = {k: (v["brand"], v["product_type"]) for k, v in read_attributes(tiny_synth / "attributes.csv").items()}
    assert all(attrs[a] == attrs[s] and a != s for s, a in zip(fooled["sku"], fooled["adv_sku"]))


def test_threat_options_are_checked_before_any_work(tmp_path):
    out = invoke("eval", "--threat", "l2,linf", "--attack-eps", "0.5", "--leaderboard", tmp_path)
    assert out.exit_code != 0 and "--attack-eps gives one threat model's budgets" in out.output
    out = invoke("eval", "--threat", "patchy", "--leaderboard", tmp_path)
    assert out.exit_code != 0 and "unknown threat model 'patchy'" in out.output and "Traceback" not in out.output
    out = invoke("eval", "--threat", "l2", "--attacks", "pgd,fgsm", "--leaderboard", tmp_path)
    assert out.exit_code != 0 and "fgsm does not serve threat model l2" in out.output


def test_ranking_follows_each_threat_models_suite_and_budgets():
    from advrp2k.board.ranking import is_ranked, rank_key

    def entry(threat, labels, names, size=32):
        attacks = [{"name": n, "eps_label": lab, "steps": 20, "version": "standard", "apgd_steps": 100,
                    "square_queries": 5000} for lab in labels for n in names]
        return {"threat_model": threat, "attacks": attacks, "data": {"image_size": size}, "model_id": "m",
                "clean_acc": 0.5, "robust_acc": {lab: 0.1 for lab in labels}}

    assert is_ranked(entry("l2", ["0.25", "0.5"], ["pgd", "autoattack"]))
    assert not is_ranked(entry("l2", ["0.25", "0.5"], ["pgd"]))
    assert not is_ranked(entry("l2", ["0.25", "0.5"], ["pgd", "autoattack"], size=224))  # needs 1.5 and 3
    assert is_ranked(entry("switch", ["4/255", "8/255"], ["pgd"]))
    assert rank_key(entry("l2", ["0.25", "0.5"], ["pgd"]))[0] == -0.1


@pytest.mark.parametrize("name,options", [("autoattack", {"apgd_steps": 5, "square_queries": 20}),
                                          ("apgd_ce", {"steps": 5}), ("square", {"queries": 20})])
def test_the_reference_attacks_run_under_l2_inside_the_ball(name, options):
    model, (x, y) = tiny_cnn().eval(), random_batch(8, classes=10)
    res = create_attack(name, "0.5", threat="l2", **options)(model, x, y, index=torch.arange(8))
    assert float(distances(L2, x, res.x_adv).max()) <= 0.5 + 1e-6
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


# --- shelf conditions ---------------------------------------------------------------------

def test_corruptions_are_identical_across_runs_and_batch_sizes():
    from advrp2k.core.shelf import CORRUPTIONS, GRID, apply, candidates

    x, _ = random_batch(6, size=16, seed=4)
    index = [10, 11, 12, 13, 14, 15]
    for k in list(range(len(CORRUPTIONS))) + [len(CORRUPTIONS) + 5, len(candidates()) - 1]:
        for s in (1, 5):
            whole = apply(x, index, s, k)
            assert torch.equal(whole, apply(x, index, s, k)), candidates()[k]
            singles = torch.cat([apply(x[i:i + 1], [index[i]], s, k) for i in range(6)])
            assert torch.equal(whole, singles), candidates()[k]
            assert whole.min() >= 0 and whole.max() <= 1
            assert torch.equal(whole, (whole * 255).round() / 255)  # 8-bit levels
    assert len(GRID) == 80
    # a corruption's draws follow the example's index, not its place in the batch
    glare = list(CORRUPTIONS).index("glare")
    assert not torch.equal(apply(x[:1], [0], 3, glare), apply(x[:1], [1], 3, glare))


def test_every_corruption_changes_the_image_and_more_at_higher_severity():
    from advrp2k.core.shelf import CORRUPTIONS, corrupt

    x, _ = random_batch(4, size=32, seed=5)
    x = (x * 0.5 + 0.25)  # room for glare and casts to show
    for name in CORRUPTIONS:
        mild, severe = ((corrupt(x, [0, 1, 2, 3], name, s) - x).abs().mean() for s in (1, 5))
        assert mild > 0 and severe > mild, name


@pytest.fixture
def unstated_shelf_point():
    """A shelf attack that names the identity but returns a brightened image."""
    @register_attack("shelf_cheat")
    class Cheat(Attack):
        threats = ("shelf",)

        def perturb(self, model, x, y, init=None, generator=None):
            return AttackResult((x + 0.2).clamp(0, 1), torch.ones(len(x), dtype=torch.bool),
                                extra={"choices": [-1] * len(x)})

    yield "shelf_cheat"
    ATTACKS.unregister("shelf_cheat")


def test_a_shelf_point_that_is_not_its_stated_transform_is_rejected(unstated_shelf_point):
    model, (x, y) = tiny_cnn(), random_batch(8)
    with pytest.raises(AttackContractError, match="not the transforms it names"):
        evaluate(model, x, y, [AttackSpec(unstated_shelf_point, threat="shelf")],
                 [threat_model("shelf").parse_budget("2")], torch.device("cpu"), sanity_checks=False,
                 escalate=False, threat="shelf")


def test_the_shelf_worst_case_is_never_above_the_mean_corruption_accuracy(tiny_synth, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVRP2K_HOME", str(tmp_path / "home"))
    result = invoke("eval", "--defense", "standard", "--dataset", "rp2k_synth", "--data", tiny_synth, "--epochs", 2,
                    "--threat", "shelf", "--attack-eps", "1,3", "--leaderboard", tmp_path / "lb")
    assert result.exit_code == 0, result.output
    entry = json.loads((tmp_path / "lb/entries/rp2k_synth/shelf/Standard_smallcnn.json").read_text())
    assert set(entry["shelf"]["mean"]) == {"1", "3"} and len(entry["shelf"]["per_corruption"]) == 10
    for label, worst in entry["robust_acc"].items():
        assert worst <= min(entry["shelf"]["per_corruption"][c][label] for c in entry["shelf"]["per_corruption"])
    assert entry["threat"]["checks"]["convergence"].startswith("does not apply")
    assert "mean corruption accuracy" in result.output
    for label, (lo, hi) in entry["shelf"]["mean_ci95"].items():  # the mean's interval holds the mean
        assert 0 <= lo <= entry["shelf"]["mean"][label] <= hi <= 1 and lo < hi

    from advrp2k.eval.corruption import check_worst_below_mean

    with pytest.raises(IntegrityError, match="worst case"):
        check_worst_below_mean({"3": 0.6}, {"mean": {"3": 0.5}})


# --- label-sized stickers (patch) -------------------------------------------------------------

class Region(nn.Module):
    """Two classes decided by the mean of the pixels inside (or, ``inside=False``, outside) the
    square [lo, hi) x [lo, hi): clean images of 0.2 are class 0, a mean above 0.5 is class 1."""

    def __init__(self, lo: int, hi: int, inside: bool = True):
        super().__init__()
        self.lo, self.hi, self.inside = lo, hi, inside

    def forward(self, x):
        m = torch.zeros_like(x[:, :1])
        m[..., self.lo:self.hi, self.lo:self.hi] = 1
        m = m if self.inside else 1 - m
        v = (x * m).sum((1, 2, 3)) / (m.sum((1, 2, 3)) * 3)
        return torch.stack([0.5 - v, v - 0.5], 1) * 10


PATCH = threat_model("patch")
QUICK = {"patch_pgd": {"steps": 15, "locations": 2}, "patch_rs": {"queries": 150}}


@pytest.mark.parametrize("name", ["patch_pgd", "patch_rs"])
def test_a_patch_changes_nothing_outside_its_square_and_stays_in_the_box(name):
    model, (x, y) = tiny_cnn().eval(), random_batch(12, size=8, seed=2)
    res = create_attack(name, "20%", threat="patch", **QUICK[name])(model, x, y, index=torch.arange(12))
    side = 3  # floor(sqrt(0.2 * 64))
    changed = (res.x_adv != x).any(1)
    for k in range(12):
        rows, cols = changed[k].any(1).nonzero(), changed[k].any(0).nonzero()
        if len(rows):
            assert rows.max() - rows.min() < side and cols.max() - cols.min() < side
    assert float(distances(PATCH, x, res.x_adv).max()) <= 0.2
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert bool(res.fooled.any())  # an untrained model falls to some 3 x 3 patch


def test_the_patch_check_rejects_two_separate_changes():
    x = torch.full((1, 3, 16, 16), 0.5)
    x_adv = x.clone()
    x_adv[..., 0, 0] = 1.0
    x_adv[..., 15, 15] = 1.0  # two pixels, but their bounding box is the whole image
    with pytest.raises(AttackContractError, match="outside the patch budget"):
        check_point(PATCH, "cheat", PATCH.parse_budget("5%"), x, x_adv)


@pytest.mark.parametrize("name", ["patch_pgd", "patch_rs"])
def test_a_model_that_ignores_the_patch_is_robust_and_one_that_reads_it_is_not(name):
    x, y = torch.full((4, 3, 16, 16), 0.2), torch.zeros(4, dtype=torch.long)
    at = {"at": "6,6"}
    blind = create_attack(name, "1/16", threat="patch", **QUICK[name], **at)(Region(6, 10, inside=False), x, y)
    reads = create_attack(name, "1/16", threat="patch", **QUICK[name], **at)(Region(6, 10, inside=True), x, y)
    assert not blind.fooled.any() and reads.fooled.all()
    # with the location searched, the sensitive 4 x 4 window is found wherever it lies
    found = create_attack(name, "1/16", threat="patch", **QUICK[name])(Region(9, 13), x, y, index=torch.arange(4))
    assert found.fooled.all()


def test_patch_budgets_and_a_bad_placement_are_refused():
    assert [e.label for e in PATCH.default_budgets()] == ["1%", "2%", "5%"]
    with pytest.raises(UsageError, match="at most 50%"):
        PATCH.parse_budget("60%")
    with pytest.raises(UsageError, match="neither 'search' nor 'ROW,COL'"):
        AttackSpec("patch_pgd", {"at": "middle"}, "patch").build_for_evaluation(PATCH.parse_budget("2%"))


def test_every_threat_model_gets_its_board_and_cards_on_the_site(tiny_synth, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVRP2K_HOME", str(tmp_path / "home"))
    lb = tmp_path / "lb"
    result = invoke("eval", "--defense", "standard", "--dataset", "rp2k_synth", "--data", tiny_synth, "--epochs", 1,
                    "--threat", "linf,patch,shelf", "--n-examples", 10, "--attack-arg", "patch_pgd.steps=3",
                    "--attack-arg", "patch_rs.queries=20", "--attack-arg", "pgd.steps=5", "--leaderboard", lb)
    assert result.exit_code == 0, result.output
    patch = json.loads((lb / "entries/rp2k_synth/patch/Standard_smallcnn.json").read_text())
    assert {a["name"]: a["steps" if a["name"] == "patch_pgd" else "queries"] for a in patch["attacks"]
            if a["name"] != "pgd"} == {"patch_pgd": 3, "patch_rs": 20}
    assert set(patch["robust_acc"]) == {"1%", "2%", "5%"}
    assert "--threat patch" in __import__("advrp2k.board.display", fromlist=["x"]).reproduce_command(patch)
    out = invoke("leaderboard", "build", lb)
    assert out.exit_code == 0, out.output
    index = (lb / "site/index.html").read_text()
    at = [index.index(f'id="table-rp2k_synth-{threat}"') for threat in ("linf", "patch", "shelf")]
    assert at == sorted(at)  # boards in the catalogue's order, l_inf first
    assert "Robust patch 5%" in index and "Robust severity 3" in index and "Mean corruption acc. (severity 3)" in index
    card = (lb / "site/entries/rp2k_synth/shelf/Standard_smallcnn.html").read_text()
    assert 'id="corruptions"' in card and "low resolution" in card and 'href="../../../index.html"' in card
    assert (lb / "site/entries/rp2k_synth/Standard_smallcnn.html").is_file()  # the l_inf card keeps its place
    out = invoke("eval", "--threat", "l2,patch", "--attack-arg", "square.queries=5", "--leaderboard", lb)
    assert out.exit_code != 0 and "in no suite of this run" in out.output


def test_a_flag_whose_remedies_serve_another_threat_model_is_reported_not_escalated():
    from advrp2k.board.entry_text import format_entry
    from advrp2k.eval.escalation import VerdictRule, plan_remedies
    from advrp2k.eval.flags import RANDOM_SEARCH_WINS

    flag = RANDOM_SEARCH_WINS.flag("a gradient-free search fooled 5 examples")
    specs, why_patch = plan_remedies([flag], [AttackSpec("patch_pgd", {}, "patch")], VerdictRule(), "patch")
    assert specs == [] and why_patch == ["white-box beats random search: remedy square does not serve patch, not run"]
    specs, why = plan_remedies([flag], [AttackSpec("pgd", {}, "linf")], VerdictRule(), "linf")
    assert [s.name for s in specs] == ["square"] and why == ["white-box beats random search"]
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "leaderboard" / "entries" / "rp2k_synth" / "linf" / "Standard_smallcnn.json"
    entry = json.loads(shipped.read_text(encoding="utf-8"))
    entry["escalation"] = {"why": why_patch, "ran": [], "robust_acc_before": {}, "robust_acc_after": {}}
    text = format_entry(entry)
    assert "NOT ESCALATED: white-box beats random search: remedy square does not serve patch, not run" in text
    assert "ESCALATED because" not in text


def test_the_sticker_transformations_are_the_identity_at_their_centre_and_tilt_the_image_otherwise():
    from advrp2k.attacks.patch import JITTER_DRAWS, _shelf_jitter

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    centre = torch.full((2, JITTER_DRAWS), 0.5)
    assert torch.allclose(_shelf_jitter(x, centre), x, atol=1e-5)  # scale 1, no turn, shift, tilt or light change
    tilted = centre.clone()
    tilted[:, 6] = 1.0  # only the perspective term: the camera tilted sideways
    content = x.clone().requires_grad_(True)
    out = _shelf_jitter(content, tilted)
    assert not torch.allclose(out, x, atol=1e-3) and out.min() >= 0 and out.max() <= 1
    # a homography, not an affine map: the left and right edges are scaled differently
    left, right = (out - x)[..., :4].abs().mean(), (out - x)[..., -4:].abs().mean()
    assert not torch.isclose(left, right, rtol=0.05)
    out.sum().backward()
    assert content.grad is not None and content.grad.abs().sum() > 0
