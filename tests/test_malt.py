"""MALT: its target choice is the linearised distance, and it reaches a class that AutoAttack's
top-9 targeted stage never tries."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from advrp2k import create_attack, parse_eps
from advrp2k.attacks.malt import candidate_classes, linearised_distances, malt_targets

D = 3 * 4 * 4  # pixels of a 4 x 4 RGB image


class Linear(nn.Module):
    """z = W x + b on the flattened image: its gradients are W's rows, so MALT's score is exact."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


def _random_linear(classes=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Linear(torch.randn(classes, D, generator=g), torch.randn(classes, generator=g)).eval()


def test_target_choice_equals_a_hand_computation():
    model = _random_linear()
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3, 5, 7, 11])
    classes, distances = linearised_distances(model, x, y, candidates=6)
    W, b = model.weight.detach(), model.bias.detach()
    z = x.flatten(1) @ W.T + b
    for i in range(len(y)):
        others = [c for c in torch.argsort(z[i], descending=True).tolist() if c != y[i]][:6]
        assert classes[i].tolist() == others
        hand = [(z[i, y[i]] - z[i, t]) / (W[y[i]] - W[t]).abs().sum() for t in others]
        assert torch.allclose(distances[i], torch.stack(hand), rtol=1e-5, atol=1e-6)
        nearest = [others[j] for j in torch.argsort(torch.stack(hand))[:2].tolist()]
        assert malt_targets(model, x[i:i + 1], y[i:i + 1], 6, 2)[0].tolist() == nearest


def _far_down_the_logits(target_rank: int = 15, classes: int = 20):
    """True class 0 at x = 0.5; classes 1..19 in logit order. Every class but one reads the second
    half of the pixels with a tiny weight (unreachable at 8/255); the one at logit rank
    ``target_rank`` reads the first half with weight 1 and is reachable within 8/255, although
    14 classes have higher logits. The halves are disjoint, so attacking a slow class never
    moves the fast one."""
    weight = torch.zeros(classes, D)
    bias = torch.zeros(classes)
    bias[0] = 2.0
    ranked = list(range(1, classes))
    fast = ranked[target_rank - 1]
    for rank, c in enumerate(ranked, start=1):
        bias[c] = 2.0 - 0.04 * rank  # gap to the true class: 0.04 * rank
        if c == fast:
            weight[c, :D // 2] = 1.0
        else:
            weight[c, D // 2:] = 1e-4
        bias[c] -= 0.5 * float(weight[c].sum())  # logits as intended at x = 0.5    # the fast class: gap 0.6, closed by an l_inf step of 0.6 / 24 = 0.025 < 8/255 = 0.0314
    return Linear(weight, bias).eval(), fast


def test_malt_reaches_a_target_outside_the_top_9_that_apgd_t_misses():
    model, fast = _far_down_the_logits()
    x, y = torch.full((4, 3, 4, 4), 0.5), torch.zeros(4, dtype=torch.long)
    eps = parse_eps("8/255")
    assert malt_targets(model, x, y, candidates=100, targets=1)[:, 0].tolist() == [fast] * 4
    top9 = create_attack("apgd_t", eps, steps=20)(model, x, y)
    assert not top9.fooled.any()  # its 9 targets are all out of reach
    malt = create_attack("malt", eps, steps=20, targets=1)(model, x, y)
    assert malt.fooled.all()
    assert (model(malt.x_adv).argmax(1) == fast).all()
    assert (malt.x_adv - x).abs().max() <= eps.value + 1e-6 and malt.x_adv.min() >= 0 and malt.x_adv.max() <= 1
    assert malt.extra["counts"] == {"examples": 4, "nearest target outside the top 9 logits": 4,
                                    "fooled with the nearest target outside the top 9": 4,
                                    "examples with sibling candidates": 0,
                                    "nearest target a sibling outside the candidates": 0,
                                    "fooled with the nearest target a sibling": 0}
    few = create_attack("malt", eps, steps=20, candidates=9, targets=9)(model, x, y)
    assert not few.fooled.any()  # with AutoAttack's 9 candidates MALT misses it too: the choice is what matters


def test_a_sibling_sku_outside_the_logit_candidates_is_scored_and_reached():
    """AutoAttack's 9 candidates miss the reachable class; named as the true SKU's sibling (as
    attributes.csv would), it joins MALT's candidates, is the nearest, and is reached."""
    model, fast = _far_down_the_logits()
    x, y = torch.full((4, 3, 4, 4), 0.5), torch.zeros(4, dtype=torch.long)
    siblings = torch.zeros(4, 20, dtype=torch.bool)
    siblings[:, fast] = True
    eps = parse_eps("8/255")
    assert malt_targets(model, x, y, 9, 1, siblings, max_siblings=10)[:, 0].tolist() == [fast] * 4
    malt = create_attack("malt", eps, steps=20, candidates=9, targets=1)(model, x, y, siblings=siblings)
    assert malt.fooled.all() and (model(malt.x_adv).argmax(1) == fast).all()
    counts = malt.extra["counts"]
    assert counts["examples with sibling candidates"] == 4
    assert counts["nearest target a sibling outside the candidates"] == 4
    assert counts["fooled with the nearest target a sibling"] == 4
    none = create_attack("malt", eps, steps=20, candidates=9, targets=1, siblings=0)(model, x, y, siblings=siblings)
    assert not none.fooled.any()  # the option switches them off


def test_sibling_candidates_by_hand():
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    y = torch.tensor([0, 5])
    siblings = torch.tensor([[True, True, False, False, True, True], [False, False, False, False, False, True]])
    classes, valid = candidate_classes(logits, y, 2, siblings, max_siblings=3)
    # example 0: top-2 wrong classes 1, 2; siblings not among them, highest logit first: 4, 5 (0 is its own)
    assert classes[0].tolist()[:4] == [1, 2, 4, 5] and valid[0].tolist() == [True, True, True, True]
    # example 1: its only sibling is itself: nothing added, the padding column is not valid
    assert classes[1].tolist()[:2] == [4, 3] and valid[1].tolist() == [True, True, False, False]
    assert candidate_classes(logits, y, 2, None, 3)[0].shape == (2, 2)


def test_malt_options_are_recorded():
    cfg = create_attack("malt", parse_eps("8/255"), targets=5).config()
    assert cfg["targets"] == 5 and cfg["candidates"] == 100 and cfg["steps"] == 100 and cfg["siblings"] == 10
    assert "linearised" in cfg["target_choice"]


def test_targeted_dlr_attacks_refuse_fewer_than_4_classes_clearly():
    from advrp2k import Advrp2kError

    model = _random_linear(classes=3)
    x, y = torch.rand(2, 3, 4, 4), torch.tensor([0, 1])
    for name in ("malt", "apgd_t", "autoattack"):
        with pytest.raises(Advrp2kError, match="at least 4 classes"):
            create_attack(name, parse_eps("8/255"))(model, x, y)


def test_malt_tallies_of_its_chosen_targets_reach_the_entry(tiny_synth, tmp_path):
    import json

    from helpers import invoke

    board = tmp_path / "board"
    result = invoke("eval", "--data", tiny_synth, "--epochs", "1", "--image-size", "16", "--no-escalate",
                    "--attacks", "pgd,malt", "--attack-arg", "malt.steps=5", "--leaderboard", board)
    assert result.exit_code == 0, result.output
    entry = json.loads((board / "entries" / "rp2k_synth" / "linf" / "Standard_smallcnn.json").read_text())
    counts = entry["reproducibility"]["counts"]
    attacked = counts["malt@8/255: examples"]
    assert attacked > 0 and counts["malt@8/255: nearest target outside the top 9 logits"] == 0  # 8 SKUs: 7 wrong
    # every SKU of the stand-in has a sibling in its attributes.csv: the engine passed them to MALT
    assert counts["malt@8/255: examples with sibling candidates"] == attacked
    assert [a for a in entry["attacks"] if a["name"] == "malt"][0]["candidates"] == 100

    from advrp2k.analysis.results import examples

    df = examples(board / "entries" / "rp2k_synth" / "linf" / "Standard_smallcnn.json")
    aimed = df["malt targets@8/255"]  # per example: MALT's chosen targets, nearest first
    attacked = aimed.notna()
    assert attacked.sum() == counts["malt@8/255: examples"] and (df.loc[attacked, "clean_correct"]).all()
    for label, targets in zip(df.loc[attacked, "label"], aimed[attacked]):
        assert len(targets) == 3 and len(set(targets)) == 3 and label not in targets


def test_malt_targets_reach_the_batch_result_and_a_malformed_record_is_refused():
    from advrp2k.eval.state import state_problem as validate_examples

    model = _random_linear()
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3, 5, 7, 11])
    result = create_attack("malt", parse_eps("8/255"), steps=2, targets=2)(model, x, y)
    assert result.extra["targets"] == malt_targets(model, x, y, 100, 2).tolist()
    record = {"header": {}, "clean_correct": [True, True], "complete": True,
              "stages": {"0:malt@8/255": {"done": [0, 1], "fooled": [], "adv_class": [], "targets": {"0": [2, 3]}}}}
    assert validate_examples(record) is None
    record["stages"]["0:malt@8/255"]["targets"] = {"7": [2]}  # an example that does not exist
    assert "targets" in validate_examples(record)
