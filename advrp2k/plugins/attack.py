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
from advrp2k.core.threat import ThreatModel, threat_model
from advrp2k.core.threat_sets import TOLERANCE, check_images, check_point, start_from_uniform
from advrp2k.plugins.options import declared_options, resolve_options, take_options

BALL_TOLERANCE = TOLERANCE  # slack of the float64 set checks (advrp2k.core.threat_sets)


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
            attack and eps into the entry's ``reproducibility.counts``; ``{"targets": [[class, ...],
            ...]}``, one list per example of the batch, the classes a targeted attack aimed at (MALT:
            its chosen targets, nearest first), kept per example in the per-example results.
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
    """Base class of attack plugins.

    Args:
        eps: budget, a float or ``"8/255"`` (or an ``Eps`` of another threat model's budget).
        seed: seeds the attack's own random generator (random starts, sampling).
        threat: the threat model it attacks under (``advrp2k.core.threat``); one of ``threats``.
        **options: the plugin's declared ``options`` (``advrp2k.plugins.options``): resolved,
            set as attributes (``self.steps``) and recorded by ``config()``.

    Subclasses declare ``options`` and implement ``perturb(model, x, y, init=None,
    generator=None)``; ``config_facts()`` adds fixed settings that are not options.
    """

    #: The threat models the attack serves (``advrp2k.core.threat``); others are refused.
    threats: tuple[str, ...] = ("linf",)
    threat: ThreatModel = threat_model("linf")
    #: Per example of the batch being attacked, the classes that count as a success (a bool
    #: (N, classes) tensor, set by the engine under a targeted goal such as ticket switching);
    #: None: any wrong class. An attack serving such a threat model aims at them (``reached``).
    goal_rows: torch.Tensor | None = None
    #: An attack that may aim at an example's sibling SKUs sets this; the engine then passes
    #: ``siblings`` (below) where the data's attribute table names product lines.
    uses_siblings = False
    #: Per example of the batch, its true SKU's siblings (the same brand and product type in
    #: ``attributes.csv``; a bool (N, classes) tensor), or None where the data names none. Hints
    #: for choosing targets only: they never change what counts as a success (``goal_rows`` does).
    sibling_rows: torch.Tensor | None = None
    gradient_free = False
    example_index: list[int] | None = None  # global indices of the batch being attacked (see __call__)
    options: dict = {}  # name -> Option; a plugin declares its own
    plugin_name: str | None = None  # set by the registry: the name the attack is registered under

    #: How the attack's random draws are keyed: "per example" (advrp2k.core.random_streams: an
    #: example's draws do not depend on its batch) or "per batch" (a library seeded once per
    #: call, as AutoAttack's and torchattacks' attacks are). Recorded in every entry.
    random_streams = "per example"

    def __init__(self, eps: float | str | Eps, seed: int | None = None, threat: str = "linf", **options):
        if threat not in self.threats:
            from advrp2k.core.errors import UsageError
            raise UsageError(f"attack {self.plugin_name or type(self).__name__} does not serve threat model {threat!r} "
                             f"(it serves {', '.join(self.threats)}): 'advrp2k list attacks' says which attacks do")
        self.threat = threat_model(threat)
        self.eps = eps if isinstance(eps, Eps) else (parse_eps(eps, allow_zero=True) if threat == "linf"
                                                      else self.threat.parse_budget(eps))
        if seed is not None:
            options = {**options, "seed": seed}
        take_options(self, options if "seed" in declared_options(type(self)) else
                     {k: v for k, v in options.items() if k != "seed"}, self.eps)
        self.seed = int(self.option_values.get("seed", seed or 0))
        self._generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 init: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 index: torch.Tensor | None = None, goal: torch.Tensor | None = None,
                 siblings: torch.Tensor | None = None) -> AttackResult:
        """Attack a batch.

        Args:
            index: the examples' global indices (the evaluator passes them). With them, every
                random draw for an example comes from the stream (seed, index, restart)
                (``advrp2k.core.random_streams``), so its result does not depend on the batch it was in.
                Without them (adversarial training), draws come from ``generator``.
            goal: per example, the classes that count as a success (``goal_rows``); None: any wrong class.
            siblings: per example, its true SKU's sibling SKUs (``sibling_rows``); None: none known.
        """
        check_images(x, "clean input")
        if init is not None:
            self.check_output(x, init)
        self.example_index = None if index is None else [int(i) for i in index.tolist()]
        self.goal_rows, self.sibling_rows = goal, siblings
        try:
            with frozen_eval(model):
                result = self.perturb(model, x, y, init=init, generator=generator or self._generator)
        finally:
            self.example_index, self.goal_rows, self.sibling_rows = None, None, None
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
        return start_from_uniform(self.threat, x, noise, self.eps.value)

    def reached(self, logits: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Per row, whether the prediction is a success under the goal: a wrong class, or (ticket
        switching) one of the example's allowed classes. ``rows``: the batch rows ``logits`` are of."""
        pred = logits.argmax(1)
        if self.goal_rows is None:
            return pred != y
        allowed = self.goal_rows if rows is None else self.goal_rows[rows]
        return allowed.gather(1, pred[:, None]).squeeze(1)

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
        threat = {} if self.threat.name == "linf" else {"threat_model": self.threat.name}  # linf records stay as they were
        return {"eps": self.eps.value, "eps_label": self.eps.label, "seed": self.seed,
                "name": self.plugin_name or type(self).__name__, **threat, **self.option_values, **self.config_facts()}

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
        """FAIL unless ``x_adv`` is finite, in [0, 1] and inside the threat model's set (float64)."""
        check_point(self.threat, type(self).__name__, self.eps, x, x_adv)


def check_ball_and_box(name: str, eps: Eps, x: torch.Tensor, x_adv: torch.Tensor, threat: str = "linf") -> None:
    """FAIL unless ``x_adv`` has ``x``'s shape, is finite, in [0, 1] and inside the threat model's
    set at eps (float64; ``advrp2k.core.threat_sets.check_point``). The evaluation engine calls it on
    every point an attack returns, whatever the plugin's own ``__call__`` did, so overriding the
    base class cannot skip it.

    Raises:
        AttackContractError: naming the attack and what it returned.
    """
    check_point(threat_model(threat), name, eps, x, x_adv)


def project_linf(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Nearest point of the eps-ball around ``x`` intersected with the [0, 1] box."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0, 1)


def random_start(x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform point of the ball (drawn on the CPU so results match across devices)."""
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return project_linf(x + (2 * noise - 1) * eps, x, eps)


def create_attack(name: str, eps: float | str | Eps, threat: str = "linf", **kwargs) -> Attack:
    """Build a registered attack by name, e.g. ``create_attack("pgd", "8/255", steps=20)``, under
    ``threat`` (refused when the attack does not serve it).

    Raises:
        UsageError: an option the plugin does not declare, of the wrong type or out of range.
    """
    from advrp2k.core.errors import UsageError
    from advrp2k.plugins.registry import ATTACKS
    from advrp2k.plugins.options import validate_options

    cls = ATTACKS.get(name)
    given = validate_options(f"attack {name!r}", cls, kwargs)
    if threat not in getattr(cls, "threats", ("linf",)):
        raise UsageError(f"attack {name!r} does not serve threat model {threat!r} (it serves "
                         f"{', '.join(getattr(cls, 'threats', ('linf',)))}): 'advrp2k list attacks' says which attacks do")
    attack = cls(eps=eps, **given) if threat == "linf" else cls(eps=eps, threat=threat, **given)
    # A plugin whose __init__ names its options (no ``options`` declaration) sets its own
    # attributes; what it was given is recorded all the same.
    attack.option_values = resolve_options(cls, given, attack.eps)
    return attack
