"""fast_batchnorm.BatchNorm2d is nn.BatchNorm2d bit for bit: eval-mode outputs and input gradients
(signed zeros included), every case it does not serve, and a Madry training run of smallcnn."""
import pytest
import torch
from torch import nn

from advrp2k.models import fast_batchnorm
from advrp2k.models.factory import create_model
from helpers import bits_equal, madry_weights_are_aten_s


def _pair(channels: int, seed: int):
    """An nn.BatchNorm2d and the fast one with the same trained-looking state, both in eval mode,
    weights frozen as an attack freezes them; a zero variance and a negative zero weight included."""
    g = torch.Generator().manual_seed(seed)
    state = {"weight": torch.randn(channels, generator=g), "bias": torch.randn(channels, generator=g),
             "running_mean": torch.randn(channels, generator=g),
             "running_var": torch.rand(channels, generator=g) * 4, "num_batches_tracked": torch.tensor(7)}
    state["running_var"][0], state["weight"][1] = 0.0, -0.0
    pair = []
    for cls in (nn.BatchNorm2d, fast_batchnorm.BatchNorm2d):
        bn = cls(channels)
        bn.load_state_dict(state)
        pair.append(bn.eval().requires_grad_(False))
    return pair


def _input_and_grad(shape, seed: int):
    g = torch.Generator().manual_seed(seed)
    x, grad = torch.randn(shape, generator=g) * 3, torch.randn(shape, generator=g)
    grad[0, :, 0, 0], grad[-1, :, -1, -1] = 0.0, -0.0
    return x, grad


@pytest.mark.parametrize("shape", [(4, 8, 32, 32), (3, 16, 5, 7), (1, 64, 1, 1)])
@pytest.mark.parametrize("seed", [0, 1])
def test_eval_outputs_and_input_gradients_are_aten_s(shape, seed):
    ref, fast = _pair(shape[1], seed)
    x, grad = _input_and_grad(shape, seed)
    outs, grads = [], []
    for bn in (ref, fast):
        xi = x.clone().requires_grad_(True)
        out = bn(xi)
        outs.append(out.detach())
        grads.append(torch.autograd.grad(out, xi, grad)[0])
    assert bits_equal(outs[0], outs[1])
    assert bits_equal(grads[0], grads[1])


def test_the_fast_gradient_is_the_one_that_ran():
    """Guards the test above against comparing ATen with itself: the fast path is taken."""
    _, fast = _pair(8, 0)
    out = fast(torch.randn(2, 8, 4, 4, requires_grad=True))
    assert type(out.grad_fn).__name__ == "_EvalBatchNormInputGradBackward"


def _cases():
    """(what, module setup, input) for each case the fast path leaves to ATen."""
    x = torch.randn(4, 8, 6, 6)
    return [("train mode", lambda bn: bn.train(), x), ("weights need gradients", lambda bn: bn.requires_grad_(True), x),
            ("float64", lambda bn: bn.double(), x.double()), ("no gradient", lambda bn: bn, x.detach())]


@pytest.mark.parametrize("what,setup,x", _cases(), ids=[c[0] for c in _cases()])
def test_cases_it_does_not_serve_are_aten_s(what, setup, x):
    ref, fast = (setup(bn) for bn in _pair(8, 2))
    xs = [x.clone().requires_grad_(what != "no gradient") for _ in range(2)]
    outs = [bn(xi) for bn, xi in zip((ref, fast), xs)]
    assert bits_equal(outs[0].detach(), outs[1].detach())
    assert "_EvalBatchNorm" not in type(outs[1].grad_fn).__name__
    if what != "no gradient":
        grads = [torch.autograd.grad(o.sum(), xi) for o, xi in zip(outs, xs)]
        assert bits_equal(grads[0][0], grads[1][0])
    assert ref.state_dict().keys() == fast.state_dict().keys()
    assert all(bits_equal(a.float(), b.float()) for a, b in zip(ref.state_dict().values(), fast.state_dict().values()))


def test_madry_training_gives_the_same_weights_as_with_aten_s_batchnorm(tmp_path):
    assert madry_weights_are_aten_s(tmp_path, aten_batchnorms=True)


def test_the_reference_has_aten_s_batchnorms():
    """Guards the test above against comparing the fast BatchNorm with itself."""
    from advrp2k.models.architectures import with_aten_layers

    model = with_aten_layers(create_model("smallcnn", 3, width=4), pools=False)
    assert sum(type(m) is fast_batchnorm.BatchNorm2d for m in model.modules()) == 0
    assert sum(type(m) is nn.BatchNorm2d for m in model.modules()) == 5
