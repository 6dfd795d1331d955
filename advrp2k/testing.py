"""Contract checks for plugin authors: ``advrp2k plugins check NAME`` runs them, and a plugin's
own test suite can call them directly::

    from advrp2k.testing import check_defense
    assert all(r.passed for r in check_defense("mydefense", eps="8/255"))

Each check trains or wraps a tiny model on tiny synthetic data (seconds on a CPU).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advrp2k.core.eps import parse_eps
from advrp2k.plugins.registry import DEFENSES
from advrp2k.eval.checks import state_digest
from advrp2k.plugins.defense import TestTimeDefense, TrainingDefense, create_defense
from advrp2k.models.factory import create_model
from advrp2k.train.trainer import TrainSettings, train


@dataclass
class CheckResult:
    check: str
    passed: bool
    detail: str = ""


def _tiny_data(n: int = 48, classes: int = 4, size: int = 16, seed: int = 0):
    """Train and test splits of separable random images (no image in both splits)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(classes, 3, size, size, generator=g)
    y = torch.randint(0, classes, (2 * n,), generator=g)
    x = (protos[y] * 0.7 + 0.3 * torch.rand(2 * n, 3, size, size, generator=g)).mul(255).to(torch.uint8)
    return (x[:n], y[:n]), (x[n:], y[n:])


def _row_hashes(x: torch.Tensor) -> set[str]:
    return {hashlib.sha256(row.contiguous().numpy().tobytes()).hexdigest() for row in x.cpu()}


class _LeakWatch(TrainingDefense):
    """Wraps a training defense and records every image it is handed."""

    def __init__(self, inner: TrainingDefense):
        self.inner, self.seen = inner, set()

    def training_loss(self, model, x, y, generator):
        self.seen |= _row_hashes((x * 255).round().to(torch.uint8))
        return self.inner.training_loss(model, x, y, generator)


def build_checked_model(name: str, eps, train_data, classes: int) -> tuple[nn.Module, set]:
    """Train (or wrap) a tiny model with defense ``name``; return it and the images training saw."""
    info = DEFENSES.info(name)
    eps_obj = parse_eps(eps) if (eps is not None and getattr(info.obj, "needs_eps", True)) else None
    defense = create_defense(name, eps=eps_obj)
    base = create_defense(defense.base_defense) if isinstance(defense, TestTimeDefense) else defense
    watch = _LeakWatch(base)
    torch.manual_seed(0)
    model = create_model("smallcnn", classes, width=4)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        train(model, watch, *train_data, TrainSettings(epochs=2, batch_size=16), tmp, torch.device("cpu"))
    if isinstance(defense, TestTimeDefense):
        model = defense.wrap(model)
    return model.eval(), watch.seen


def check_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: int) -> list[CheckResult]:
    """The model-side contract: shape, determinism, eval mode, usable gradients."""
    out = []
    model.eval()
    digest = state_digest(model)
    with torch.no_grad():
        a, b = model(x), model(x)
    out.append(CheckResult("output shape", a.shape == (len(x), classes), f"got {tuple(a.shape)}, want ({len(x)}, {classes})"))
    out.append(CheckResult("deterministic forward", torch.allclose(a, b, atol=1e-5),
                           f"two passes differ by {(a - b).abs().max():.3g}"))
    out.append(CheckResult("eval mode respected", state_digest(model) == digest and not model.training,
                           "forward passes in eval mode changed the model's state"))
    xg = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(model(xg), y), xg, allow_unused=True)
    ok = grad is not None and bool(torch.isfinite(grad).all()) and float((grad.flatten(1).abs().amax(1) > 0).float().mean()) > 0.5
    out.append(CheckResult("gradients usable", ok, "input gradients are missing, non-finite or mostly zero"))
    return out


def check_defense(name: str, eps: str | None = "8/255") -> list[CheckResult]:
    """Run every contract check on defense ``name``; returns one result per check. A defense
    that trains nothing (``trains = False``: it labels models trained elsewhere) has only its
    options to check, and the result says so instead of passing the training checks silently."""
    if not getattr(DEFENSES.get(name), "trains", True):
        return [CheckResult("trains nothing (labels models trained elsewhere): training checks do not apply", True),
                check_options_keyed(name, eps)]
    classes = 4
    (xtr, ytr), (xte, yte) = _tiny_data(classes=classes)
    try:
        model, seen = build_checked_model(name, eps, (xtr, ytr), classes)
    except Exception as exc:  # the check reports the plugin's failure instead of crashing
        return [CheckResult("trains or wraps a model", False, f"{type(exc).__name__}: {exc}")]
    results = [CheckResult("trains or wraps a model", True)]
    results += check_model(model, xte.float() / 255, yte, classes)
    leaked = len(seen & _row_hashes(xte))
    results.append(CheckResult("no test images seen in training", leaked == 0,
                               f"{leaked} evaluation images reached the training loss"))
    results.append(check_options_keyed(name, eps))
    return results


def check_options_keyed(name: str, eps: str | None = "8/255") -> CheckResult:
    """Each declared option, set to another allowed value, changes ``config()`` (which keys the
    trained-model cache): else two option values would silently share one trained model."""
    cls = DEFENSES.get(name)
    eps_obj = parse_eps(eps) if (eps is not None and getattr(cls, "needs_eps", True)) else None
    try:
        base = create_defense(name, eps=eps_obj).config()
        missed = [key for key, value in _other_values(cls)
                  if create_defense(name, eps=eps_obj, **{key: value}).config() == base]
    except Exception as exc:  # the check reports the plugin's failure instead of crashing
        return CheckResult("every option reaches the cache key", False, f"{type(exc).__name__}: {exc}")
    return CheckResult("every option reaches the cache key", not missed,
                       f"config() is the same whatever {', '.join(missed)} is: two values would share one "
                       f"trained model; declare options in `options` and leave config() to the base class")


def _other_values(cls):
    """(option, a valid value other than its resolved default) for each declared option."""
    from advrp2k.plugins.options import declared_options

    for key, opt in declared_options(cls).items():
        if opt.choices:
            others = [c for c in opt.choices if c != opt.default]
            value = others[0] if others else None
        elif opt.type is bool:
            value = not bool(opt.default)
        elif opt.type in (int, float):
            low = opt.min if opt.min is not None else 0
            value = opt.type(low + 1) if opt.default is None or opt.default != low + 1 else opt.type(low + 2)
            if opt.max is not None and value > opt.max:
                value = opt.type(low) if opt.type(low) != opt.default else opt.type((low + opt.max) / 2)
        else:
            value = f"{opt.default}-other"
        if value is not None:
            yield key, value
