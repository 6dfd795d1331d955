"""Per-example random streams: an example's result does not depend on how the work was batched."""
import torch

from advrp2k import parse_eps
from advrp2k.eval.evaluator import AttackSpec, evaluate
from advrp2k.core.random_streams import stream_seed, uniform
from conftest import tiny_cnn

CPU = torch.device("cpu")


def test_streams_are_keyed_by_seed_index_and_restart():
    a = uniform((3, 2, 2), 0, [5, 7], [0, 1])
    b = uniform((3, 2, 2), 0, [7, 5, 5], [1, 0, 1])
    assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0])  # same key, same numbers, any position
    assert not torch.equal(b[1], b[2])  # another restart, another stream
    assert not torch.equal(uniform((4,), 1, [5], [0]), uniform((4,), 0, [5], [0]))  # another seed
    assert len({stream_seed(0, i, r) for i in range(100) for r in range(3)}) == 300


def test_an_examples_result_does_not_change_with_the_batch_size():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    y = torch.randint(0, 4, (40,), generator=g)
    model = tiny_cnn(seed=1).eval()
    suite = [AttackSpec("pgd", {"steps": 5, "restarts": 2}), AttackSpec("fgsm", {"random_start": True})]
    eps = [parse_eps("4/255"), parse_eps("8/255")]
    results = [evaluate(model, x, y, suite, eps, CPU, batch_size=bs, sanity_checks=False) for bs in (1, 3, 40)]
    for other in results[1:]:
        assert other.fooled_by == results[0].fooled_by
        assert all(torch.equal(other.robust[k], results[0].robust[k]) for k in results[0].robust)
    assert 0 < sum(f not in (None, "clean") for f in results[0].fooled_by) < 40  # the test is not vacuous
