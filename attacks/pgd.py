"""Projected gradient descent, l_inf (Madry et al. 2018, "Towards Deep Learning Models
Resistant to Adversarial Attacks", arXiv:1706.06083).

Args (defaults):
    eps: l_inf budget in [0, 1] pixel units (required; e.g. ``8/255``).
    steps: 20 gradient-sign steps.
    step_size: ``2.5 * eps / steps`` when None (Madry et al.'s rule: the walk can cross the
        ball, so the attack is not limited by its step budget).
    random_start: True: start at a uniform point of the ball.
    restarts: 1; each restart attacks only examples not yet fooled.
    loss: ``"ce"`` (cross-entropy) or ``"cw"`` (margin loss).
    early_stop: True: an example leaves the batch the moment a visited point fools the model,
        and its slot is refilled from the examples (or restarts) still waiting (evaluation).
        Adversarial training passes False: every example runs every step, final point returned.
        An evaluation refuses False (``evaluation_problem``).
    eot: 1; gradients averaged over this many passes (a randomized model's protocol).
    seed: 0.

The declaration in ``options`` is the only place these are written: they become attributes
(``self.steps``) and the recorded config.

An example counts as fooled if ANY visited point inside the ball fooled the model (the
start, every iterate and the final point), as AutoAttack counts it. Gradients are taken
with respect to the input only.
"""
from __future__ import annotations

from collections import deque

import torch

from advrp2k import LOSSES, Attack, AttackResult, Option, project, register_attack, set_margin, steepest_step

EOT_SAMPLES = 10  # gradient samples per step against a randomized model (Athalye et al. 2018)


@register_attack("pgd")
class PGD(Attack):
    #: l_inf and l2 balls (the threat model gives the step and the projection), and ticket
    #: switching, where the loss is the margin toward the example's sibling SKUs.
    threats = ("linf", "l2", "switch")
    refills = True  # the engine may hand it more examples than a batch; it keeps a batch in flight
    options = {
        "steps": Option(int, 20, min=1, max=10_000, help="gradient-sign steps"),
        "step_size": Option(float, None, min=0, max=1, help="2.5 * eps / steps when unset",
                            derive=lambda o, eps: 2.5 * eps.value / o["steps"]),
        "random_start": Option(bool, True, help="start at a uniform point of the ball"),
        "restarts": Option(int, 1, min=1, max=1_000, help="restarts; each attacks only survivors"),
        "loss": Option(str, "ce", choices=tuple(sorted(LOSSES)), help="cross-entropy or margin loss"),
        "early_stop": Option(bool, True, help="drop an example the moment it is fooled"),
        "eot": Option(int, 1, min=1, max=1_000, help="gradients averaged over this many passes (randomized models)"),
        "seed": Option(int, 0, min=0, max=2**63 - 1, help="seeds the attack's random draws"),
    }

    def __init__(self, eps, **options):
        super().__init__(eps, **options)
        self.max_active: int | None = None  # set by the evaluation engine: examples in flight at once

    def evaluation_problem(self) -> str | None:
        if self.early_stop:
            return None
        return ("pgd.early_stop=False is adversarial training's mode (every step runs and the final point is "
                "returned, without restarts, warm starts or the any-visited-point rule): an evaluation always "
                "stops an example at its first fooling point, which changes its cost, not its verdict; leave it out")

    @classmethod
    def randomized_options(cls, options: dict) -> dict:
        return {**options, "eot": max(EOT_SAMPLES, options.get("eot", 1))}

    def perturb(self, model, x, y, init=None, generator=None) -> AttackResult:
        if self.early_stop:
            return self._stream(model, x, y, init, generator, self.max_active or len(x))
        return self._train_point(model, x, y, generator)

    def _start(self, x, generator, rows: list[int], restarts: list[int]):
        """Starting points of the batch ``rows`` at those ``restarts`` (x itself without random start)."""
        if not self.random_start:
            return x.clone()
        return self.random_start_of(x, rows, restarts, generator)

    def _stream(self, model, x, y, init, generator, max_active: int) -> AttackResult:
        """Evaluation PGD with early exit and refill.

        (example, restart) items wait in a queue; at most ``max_active`` are in flight. An item
        leaves the moment a visited point fools the model, or after its last step; a free slot
        is refilled from the queue at once, and an unfooled item queues its next restart.
        """
        n, loss_fn = len(x), LOSSES[self.loss]
        queue = deque((i, 0) for i in range(n))
        x_adv, out = x.clone(), x.clone()
        steps = torch.zeros(n, dtype=torch.long, device=x.device)
        restart = torch.zeros(n, dtype=torch.long)
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        active = torch.zeros(0, dtype=torch.long, device=x.device)
        forwards = backwards = 0
        while queue or active.numel():
            active = self._admit(active, queue, max_active, x, init, x_adv, steps, restart, generator)
            last = steps[active] == self.steps
            xa = x_adv[active].requires_grad_(not bool(last.all()))
            with torch.enable_grad():
                logits = model(xa)
            forwards += len(active)
            wrong = self.reached(logits, y[active], active)
            fooled[active[wrong]] = True
            out[active[wrong]] = xa.detach()[wrong]
            finished = ~wrong & last
            out[active[finished]] = xa.detach()[finished]
            for i in active[finished].tolist():
                if restart[i] + 1 < self.restarts:
                    queue.append((i, int(restart[i]) + 1))
            cont = ~wrong & ~last
            if cont.any():
                grad = self._grad(model, xa, logits, cont, y[active[cont]], self._loss_of(loss_fn, active[cont]))
                forwards += (self.eot - 1) * len(active)
                backwards += self.eot * len(active)
                moving = active[cont]
                x_adv[moving] = project(self.threat, xa.detach()[cont] + steepest_step(self.threat, grad[cont],
                                                                                        self.step_size),
                                        x[moving], self.eps.value)
                steps[moving] += 1
            active = active[cont]
        return AttackResult(out, fooled, forwards, backwards)

    def _loss_of(self, loss_fn, rows):
        """The per-example loss: the chosen one, or under a targeted goal (ticket switching) the
        margin toward the batch ``rows``' allowed classes."""
        if self.goal_rows is None:
            return loss_fn
        allowed = self.goal_rows[rows]
        return lambda logits, y: set_margin(logits, allowed)

    def _grad(self, model, xa, logits, rows, y, loss_fn) -> torch.Tensor:
        """Input gradient of the summed loss of ``rows``; with ``eot`` > 1, summed over that many
        forward passes (expectation over transformation: a randomized model's noise averages out)."""
        grad, = torch.autograd.grad(loss_fn(logits[rows], y).sum(), xa)
        for _ in range(self.eot - 1):
            with torch.enable_grad():
                more, = torch.autograd.grad(loss_fn(model(xa)[rows], y).sum(), xa)
            grad = grad + more
        return grad

    def _admit(self, active, queue, max_active, x, init, x_adv, steps, restart, generator):
        room = min(max_active - len(active), len(queue))
        if room <= 0:
            return active
        items = [queue.popleft() for _ in range(room)]
        new = torch.tensor([i for i, _ in items], dtype=torch.long, device=x.device)
        first = torch.tensor([r == 0 for _, r in items], device=x.device)
        start = self._start(x[new], generator, [i for i, _ in items], [r for _, r in items])
        if init is not None:  # the first restart starts from the given point (a smaller eps's survivor)
            start = torch.where(first[:, None, None, None], init[new], start)
        x_adv[new] = start
        steps[new] = 0
        restart[new.cpu()] = torch.tensor([r for _, r in items])
        return torch.cat([active, new])

    def _train_point(self, model, x, y, generator) -> AttackResult:
        """Adversarial training's PGD: every example runs every step; returns the final point.

        ``fooled`` is not tracked here (all False): the final point is returned whether or not an
        earlier one fooled the model, so claiming it would break the evaluation's re-verification.
        """
        loss_fn, eps = LOSSES[self.loss], self.eps.value
        x_adv = self._start(x, generator, list(range(len(x))), [0] * len(x))
        for _ in range(self.steps):
            xa = x_adv.requires_grad_(True)
            with torch.enable_grad():
                grad, = torch.autograd.grad(loss_fn(model(xa), y).sum(), xa)
            x_adv = project(self.threat, xa.detach() + steepest_step(self.threat, grad, self.step_size), x, eps)
        none = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        return AttackResult(x_adv, none, self.steps * len(x), self.steps * len(x))


@register_attack("pgd_cw")
class PGDMargin(PGD):
    """PGD on the Carlini-Wagner margin loss (same options as ``pgd``; ``loss`` defaults to ``"cw"``)."""

    options = {**PGD.options, "loss": Option(str, "cw", choices=tuple(sorted(LOSSES)), help="margin loss")}
