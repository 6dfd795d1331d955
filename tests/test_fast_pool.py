"""MaxPool2x2 is nn.MaxPool2d(2) bit for bit: values, gradients (ties and signed zeros included)
and a Madry training run of smallcnn, which uses it."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advrp2k.models.factory import create_model
from advrp2k.models.fast_pool import MaxPool2x2, max_pool_2x2, window_argmax
from helpers import bits_equal, madry_weights_are_aten_s


def _tied(shape, seed=0):
    """ReLU-like activations with many ties: repeated values, +0.0 and -0.0 in the same windows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(shape, generator=g))
    flat = x.view(-1)
    flat[::5] = 0.25
    flat[2::5] = 0.25  # ties inside rows, across rows and on the diagonal of windows
    flat[3::7] = -0.0
    return x


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (16, 8, 32, 32), (3, 5, 2, 6)])
def test_values_indices_and_gradients_are_aten_s(shape):
    x = _tied(shape)
    ref_out, ref_idx = F.max_pool2d(x, 2, return_indices=True)
    assert torch.equal(window_argmax(x), ref_idx)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_a, out_b = F.max_pool2d(a, 2), max_pool_2x2(b)
    assert bits_equal(out_a, out_b) and bits_equal(out_b, ref_out)
    grad = torch.randn_like(out_a)
    grad.view(-1)[::3] = -0.0
    assert bits_equal(torch.autograd.grad(out_a, a, grad)[0], torch.autograd.grad(out_b, b, grad)[0])


def test_all_equal_window_sends_the_gradient_to_its_first_element():
    x = torch.ones(1, 1, 2, 2, requires_grad=True)
    max_pool_2x2(x).sum().backward()
    assert x.grad.view(-1).tolist() == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("x", [torch.rand(2, 3, 5, 4), torch.rand(2, 3, 4, 7), torch.rand(2, 4, 4, 3).permute(0, 3, 1, 2),
                               torch.rand(3, 4, 4)], ids=["odd height", "odd width", "channels-last", "3-d"])
def test_inputs_it_does_not_serve_get_aten_s_pool(x):
    assert bits_equal(MaxPool2x2()(x), nn.MaxPool2d(2)(x))


def test_madry_training_gives_the_same_weights_as_with_aten_s_pool(tmp_path):
    assert madry_weights_are_aten_s(tmp_path, aten_pools=True)


def test_the_reference_has_aten_s_pools():
    """Guards the test above against comparing the fast pool with itself."""
    from advrp2k.models.architectures import with_aten_layers

    model = with_aten_layers(create_model("smallcnn", 3, width=4), batchnorms=False)
    assert sum(isinstance(m, MaxPool2x2) for m in model.modules()) == 0
    assert sum(type(m) is nn.MaxPool2d for m in model.modules()) == 2
