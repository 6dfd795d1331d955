"""Every l_inf and l2 attack of torchattacks (Kim 2020, arXiv:2010.01950) as ``ta:<Name>``, through
this one adapter: ``--attacks pgd,ta:MIFGSM,ta:DIFGSM`` (l_inf), ``--threat l2 --attacks pgd,ta:PGDL2``.
An attack serves the threat models of its norm: the l_inf ones l_inf, PGDL2 l2, and those with a
``norm`` argument (APGD, APGDT, FAB, Square, AutoAttack) both, with the norm set from the threat model.

The attack contract holds as for every plugin (the base class checks the input range, the ball
and the box, runs the model in eval mode with frozen weights, and the evaluator re-verifies
every claim). torchattacks' traps are handled here:

* the model is passed per call (a torchattacks object binds it at construction, so one is
  built for each batch);
* its own eval/train switching and its normalisation settings are never used: advrp2k's
  models normalise inside themselves, and inputs stay in [0, 1];
* ``n_classes`` means targets + 1 (APGDT, FAB, AutoAttack): it is set to at most 10, so
  targeted attacks use the top 9 classes, never all 2,387 others;
* an attack may return a point that is not the best it visited: every point it feeds the model
  inside the ball is watched, and an example counts as fooled if any of them fooled it (the
  returned point is replaced by that fooling point);
* its random draws come from torch's global generator: they are seeded from the attack's seed
  and the batch's first example index, in a forked generator that leaves the caller's untouched.

Attacks without a budget or of other norms (CW, DeepFool, JSMA, OnePixel, ...) are refused with a message.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from advrp2k import ATTACKS, BALL_TOLERANCE, Attack, AttackResult, Option, distances, register_attack
from advrp2k.attacks.torchattacks_names import L2_ONLY, NOT_LINF, PREFIX, threats_of  # noqa: F401 (re-exported)

#: advrp2k list reads the ta: family from torchattacks' sources, without importing it or torch.
PLUGIN_LISTING = "advrp2k.attacks.torchattacks_names:listed"

EPS_PARAM = {"PIFGSM": "max_epsilon", "PIFGSMPP": "max_epsilon"}
FIXED = {"norm": "Linf", "verbose": False}
MAX_TARGETS = 9  # torchattacks' n_classes is targets + 1


def _library():
    try:
        import torchattacks
    except ImportError:
        return None
    return torchattacks


def _options(cls) -> dict[str, Option]:
    """Settable options of a torchattacks class: its constructor's simple defaults (eps, norm,
    n_classes, seed and verbose are set by the adapter)."""
    out = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name in ("self", "model", "eps", EPS_PARAM.get(cls.__name__), "n_classes", "seed", *FIXED):
            continue
        if type(p.default) in (int, float, bool, str):
            kind = float if type(p.default) is int and name in ("alpha", "decay", "scale", "std", "beta") else type(p.default)
            out[name] = Option(kind, p.default, help=f"torchattacks {cls.__name__}({name}=...)")
    out["seed"] = Option(int, 0, min=0, max=2**31 - 1, help="seeds torchattacks' random draws (with the batch)")
    return out


class _Watch(nn.Module):
    """The model as torchattacks sees it: every batch it feeds that lies in the ball is checked,
    and the first fooling point per example is kept (the contract: any visited point counts)."""

    def __init__(self, model, x, y, eps, threat):
        super().__init__()
        self.model, self.x, self.y, self.eps, self.threat = model, x, y, eps, threat
        self.fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.point = x.clone()

    def forward(self, inputs):
        logits = self.model(inputs)
        if inputs.shape == self.x.shape:
            with torch.no_grad():
                inside = (distances(self.threat, self.x, inputs).to(inputs.device) <= self.eps + BALL_TOLERANCE) \
                    & (inputs.flatten(1).amin(1) >= 0) & (inputs.flatten(1).amax(1) <= 1)
                new = inside & (logits.argmax(1) != self.y) & ~self.fooled
                self.point[new] = inputs.detach()[new]
                self.fooled |= new
        return logits


class TorchattacksAttack(Attack):
    """Base of the ``ta:<Name>`` plugins; ``ta_class`` is the torchattacks class."""
    random_streams = "per batch"  # the library seeds its generator once per call

    ta_class = None
    library = ""

    @property
    def ta_options(self) -> dict:
        """The torchattacks constructor's arguments: every declared option but the seed."""
        return {k: v for k, v in self.option_values.items() if k != "seed"}

    def config_facts(self) -> dict:
        return {"implementation": self.library}

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        watch = _Watch(model, x, y, self.eps.value, self.threat).eval()
        kwargs = dict(self.ta_options)
        params = inspect.signature(self.ta_class.__init__).parameters
        kwargs[EPS_PARAM.get(self.ta_class.__name__, "eps")] = self.eps.value
        kwargs.update({k: v for k, v in FIXED.items() if k in params})
        if "norm" in params:
            kwargs["norm"] = {"linf": "Linf", "l2": "L2"}[self.threat.name]
        if "n_classes" in params:
            with torch.no_grad():
                kwargs["n_classes"] = min(MAX_TARGETS + 1, model(x[:1]).shape[1])
        if "seed" in params:
            kwargs["seed"] = self.seed
        first = self.example_index[0] if self.example_index else 0
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(self.seed * 1_000_003 + first)
            attack = self.ta_class(watch, **kwargs)
            x_adv = attack(x, y).detach()
        with torch.no_grad():
            final_wrong = watch.model(x_adv).argmax(1) != y
        # An earlier fooling point is returned where the final one does not fool.
        use_visited = watch.fooled & ~final_wrong
        x_adv = torch.where(use_visited[:, None, None, None], watch.point, x_adv)
        return AttackResult(x_adv, final_wrong | watch.fooled, extra={"torchattacks": self.ta_class.__name__})


def _register_all() -> None:
    lib = _library()
    if lib is None:
        return
    base = getattr(lib.attack, "Attack", None)
    for name in sorted(dir(lib)):
        cls = getattr(lib, name)
        if not (inspect.isclass(cls) and base and issubclass(cls, base)) or name in NOT_LINF:
            continue
        threats = _threats_of(cls)
        plugin = type(f"TA_{name}", (TorchattacksAttack,), {
            "ta_class": cls, "options": _options(cls), "library": f"torchattacks {lib.__version__}", "threats": threats,
            "__doc__": f"torchattacks.{name} ({', '.join(threats)}) through advrp2k's adapter.", "__module__": __name__})
        register_attack(PREFIX + name)(plugin)


def _threats_of(cls) -> tuple[str, ...]:
    return threats_of(cls.__name__, inspect.signature(cls.__init__).parameters)


def explain_unknown(name: str) -> str | None:
    """Why ``ta:<Name>`` is not an attack here (another norm, or not in torchattacks)."""
    if not name.startswith(PREFIX):
        return None
    short = name[len(PREFIX):]
    if short in NOT_LINF:
        return (f"{name} is refused: its threat model is {NOT_LINF[short]}, which no advrp2k threat model is; "
                f"use an l_inf or l2 attack (advrp2k list attacks shows the ta: family)")
    if _library() is None:
        return f"{name} needs torchattacks: python3 -m pip install torchattacks"
    return None


_register_all()
ATTACKS.hints.append(explain_unknown)
