"""MaxPool2x2 is nn.MaxPool2d(2) bit for bit: values, gradients (ties and signed zeros included)
and a Madry training run of smallcnn, which uses it."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advrp2k.core.eps import parse_eps
from advrp2k.models.factory import create_model
from advrp2k.models.fast_pool import MaxPool2x2, max_pool_2x2, window_argmax
from advrp2k.plugins.defense import create_defense
from advrp2k.train.trainer import TrainSettings, train


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values and equal signs of zero (torch.equal alone calls -0.0 and +0.0 equal)."""
    return torch.equal(a, b) and torch.equal(torch.signbit(a), torch.signbit(b))


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
    assert _bits_equal(out_a, out_b) and _bits_equal(out_b, ref_out)
    grad = torch.randn_like(out_a)
    grad.view(-1)[::3] = -0.0
    assert _bits_equal(torch.autograd.grad(out_a, a, grad)[0], torch.autograd.grad(out_b, b, grad)[0])


def test_all_equal_window_sends_the_gradient_to_its_first_element():
    x = torch.ones(1, 1, 2, 2, requires_grad=True)
    max_pool_2x2(x).sum().backward()
    assert x.grad.view(-1).tolist() == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("x", [torch.rand(2, 3, 5, 4), torch.rand(2, 3, 4, 7), torch.rand(2, 4, 4, 3).permute(0, 3, 1, 2),
                               torch.rand(3, 4, 4)], ids=["odd height", "odd width", "channels-last", "3-d"])
def test_inputs_it_does_not_serve_get_aten_s_pool(x):
    assert _bits_equal(MaxPool2x2()(x), nn.MaxPool2d(2)(x))


def _madry_run(tmp_path, name, native: bool):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(48, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    y = torch.randint(0, 3, (48,), generator=g)
    model = create_model("smallcnn", 3, width=4)
    if native:  # the same network with ATen's pools
        body = model[1]
        for i, layer in enumerate(body):
            if isinstance(layer, MaxPool2x2):
                body[i] = nn.MaxPool2d(2)
    assert sum(isinstance(m, MaxPool2x2) for m in model.modules()) == (0 if native else 2)
    defense = create_defense("madry", eps=parse_eps("8/255"), steps=2)
    return train(model, defense, x, y, TrainSettings(epochs=2, batch_size=16, lr_decay_every=1),
                 tmp_path / name, torch.device("cpu")).state_dict()


def test_madry_training_gives_the_same_weights_as_with_aten_s_pool(tmp_path):
    fast, native = _madry_run(tmp_path, "fast", False), _madry_run(tmp_path, "native", True)
    assert fast.keys() == native.keys()
    assert all(_bits_equal(fast[k], native[k]) for k in fast if fast[k].is_floating_point())
    assert any(not torch.equal(fast[k], create_model("smallcnn", 3, width=4).state_dict()[k]) for k in fast)
