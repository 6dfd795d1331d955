"""The attack contract. The base class enforces it so that a plugin cannot silently cheat:

* inputs must be images in [0, 1] (catches data normalised before the attack);
* the model runs in eval mode with frozen weights, and both are restored afterwards;
* outputs must be finite, inside the box [0, 1] and inside the eps-ball (checked in float64).

The model is passed per call, never bound at construction.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from advrp2k.core.eps import Eps, parse_eps
from advrp2k.core.errors import AttackContractError
from advrp2k.core.random_streams import uniform
from advrp2k.plugins.options import declared_options, resolve_options, take_options

BALL_TOLERANCE = 1e-6


@dataclass
class AttackResult:
    """What an attack found for one batch.

    Attributes:
        x_adv: the fooling point where one was found, else the attack's final point.
        fooled: bool per example: some visited point inside the ball was misclassified.
        forwards: example-forward passes spent (for efficiency accounting).
        backwards: example-input-gradient passes spent.
        extra: ``{"counts": {name: int}}`` tallies the attack keeps of its own choices (MALT: how
            many chosen targets lie outside the top 9 logits); the evaluator adds them up per
            attack and eps into the entry's ``reproducibility.counts``.
    """

    x_adv: torch.Tensor
    fooled: torch.Tensor
    forwards: int = 0
    backwards: int = 0
    extra: dict = field(default_factory=dict)


#: BatchNorm's mode while an attack runs, in evaluation and in adversarial training alike: eval,
#: so attacks see the running statistics and never move them (recorded in entries of trained defenses).
ATTACK_BATCHNORM = "eval: running statistics, never updated by the attack"


@contextlib.contextmanager
def frozen_eval(model: nn.Module):
    """Eval mode and no weight gradients for the duration; the previous state comes back after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


class Attack:
    """Base class of l_inf attack plugins.

    Args:
        eps: budget, a float or ``"8/255"``.
        seed: seeds the attack's own random generator (random starts, sampling).
        **options: the plugin's declared ``options`` (``advrp2k.plugins.options``): resolved,
            set as attributes (``self.steps``) and recorded by ``config()``.

    Subclasses declare ``options`` and implement ``perturb(model, x, y, init=None,
    generator=None)``; ``config_facts()`` adds fixed settings that are not options.
    """

    norm = "linf"
    gradient_free = False
    example_index: list[int] | None = None  # global indices of the batch being attacked (see __call__)
    options: dict = {}  # name -> Option; a plugin declares its own
    plugin_name: str | None = None  # set by the registry: the name the attack is registered under

    #: How the attack's random draws are keyed: "per example" (advrp2k.core.random_streams: an
    #: example's draws do not depend on its batch) or "per batch" (a library seeded once per
    #: call, as AutoAttack's and torchattacks' attacks are). Recorded in every entry.
    random_streams = "per example"

    def __init__(self, eps: float | str | Eps, seed: int | None = None, **options):
        self.eps = eps if isinstance(eps, Eps) else parse_eps(eps, allow_zero=True)
        if seed is not None:
            options = {**options, "seed": seed}
        take_options(self, options if "seed" in declared_options(type(self)) else
                     {k: v for k, v in options.items() if k != "seed"}, self.eps)
        self.seed = int(self.option_values.get("seed", seed or 0))
        self._generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 init: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 index: torch.Tensor | None = None) -> AttackResult:
        """Attack a batch.

        Args:
            index: the examples' global indices (the evaluator passes them). With them, every
                random draw for an example comes from the stream (seed, index, restart)
                (``advrp2k.core.random_streams``), so its result does not depend on the batch it was in.
                Without them (adversarial training), draws come from ``generator``.
        """
        check_images(x, "clean input")
        if init is not None:
            self.check_output(x, init)
        self.example_index = None if index is None else [int(i) for i in index.tolist()]
        try:
            with frozen_eval(model):
                result = self.perturb(model, x, y, init=init, generator=generator or self._generator)
        finally:
            self.example_index = None
        result.x_adv = result.x_adv.detach()
        self.check_output(x, result.x_adv)
        return result

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        raise NotImplementedError

    def random_start_of(self, x: torch.Tensor, rows: list[int], restarts: list[int], generator) -> torch.Tensor:
        """Uniform points of the ball around ``x`` (the batch's ``rows``, at those ``restarts``):
        from the per-example streams when the global indices are known, else from ``generator``."""
        if self.example_index is None:
            return random_start(x, self.eps.value, generator)
        index = [self.example_index[r] for r in rows]
        noise = uniform(tuple(x.shape[1:]), self.seed, index, restarts, x.dtype).to(x.device)
        return project_linf(x + (2 * noise - 1) * self.eps.value, x, self.eps.value)

    @classmethod
    def randomized_options(cls, options: dict) -> dict:
        """This attack's options for a randomized (non-deterministic) model.

        The evaluator switches to the field's protocol for randomized defenses by itself; each
        plugin says what that means for it (PGD: expectation over transformation; AutoAttack:
        its "rand" version). The default leaves the options as they are.
        """
        return dict(options)

    def config(self) -> dict:
        """What ran: the budget, the registered name, every declared option's resolved value and
        the fixed facts (keys the per-example results, so every option that changes a result is in it)."""
        return {"eps": self.eps.value, "eps_label": self.eps.label, "seed": self.seed,
                "name": self.plugin_name or type(self).__name__, **self.option_values, **self.config_facts()}

    def config_facts(self) -> dict:
        """Fixed settings that are not options but say what ran (the implementation used)."""
        return {}

    def evaluation_problem(self) -> str | None:
        """Why this attack, as configured, cannot serve in an evaluation (None: it can): an option
        whose path would not honour the evaluation's rules (any visited point counts, restarts,
        warm starts from the smaller eps). The evaluation refuses it rather than record a config
        that did not run."""
        return None

    def check_output(self, x: torch.Tensor, x_adv: torch.Tensor) -> None:
        """FAIL unless ``x_adv`` is finite, in [0, 1] and within eps of ``x`` (float64 comparison)."""
        check_ball_and_box(type(self).__name__, self.eps, x, x_adv)


def check_ball_and_box(name: str, eps: Eps, x: torch.Tensor, x_adv: torch.Tensor) -> None:
    """FAIL unless ``x_adv`` has ``x``'s shape, is finite, in [0, 1] and within eps of ``x``
    (float64). The evaluation engine calls it on every point an attack returns, whatever the
    plugin's own ``__call__`` did, so overriding the base class cannot skip it.

    Raises:
        AttackContractError: naming the attack and what it returned.
    """
    if x_adv.shape != x.shape:
        raise AttackContractError(f"{name} returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    check_images(x_adv, f"{name} output")
    dist = (x_adv.double() - x.double()).abs().amax() if x.numel() else torch.tensor(0.0)
    if dist > eps.value + BALL_TOLERANCE:
        raise AttackContractError(f"{name} stepped outside the eps-ball: max |x_adv - x| = {dist:.6g} "
                                  f"> eps {eps.label} = {eps.value:.6g}; its result is rejected")


def check_images(x: torch.Tensor, what: str) -> None:
    if not torch.isfinite(x).all():
        raise AttackContractError(f"{what} has NaN or infinite values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise AttackContractError(f"{what} is outside [0, 1] (min {x.min():.3g}, max {x.max():.3g}): images "
                                  f"must be un-normalised pixels; the model normalises inside itself")


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Nearest point of the eps-ball around ``x`` intersected with the [0, 1] box."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0, 1)


def random_start(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform point of the ball (drawn on the CPU so results match across devices)."""
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return project_linf(x + (2 * noise - 1) * eps, x, eps)


def create_attack(name: str, eps: float | str | Eps, **kwargs) -> Attack:
    """Build a registered attack by name, e.g. ``create_attack("pgd", "8/255", steps=20)``.

    Raises:
        UsageError: an option the plugin does not declare, of the wrong type or out of range.
    """
    from advrp2k.plugins.registry import ATTACKS
    from advrp2k.plugins.options import validate_options

    cls = ATTACKS.get(name)
    given = validate_options(f"attack {name!r}", cls, kwargs)
    attack = cls(eps=eps, **given)
    # A plugin whose __init__ names its options (no ``options`` declaration) sets its own
    # attributes; what it was given is recorded all the same.
    attack.option_values = resolve_options(cls, given, attack.eps)
    return attack
