"""TRADES (Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and
Accuracy", arXiv:1901.08573) as an advrp2k defense plugin.

Loss: CE(f(x), y) + beta * KL(f(x) || f(x')), where x' maximises the KL term inside the
l_inf ball (PGD on the KL, started at x plus small Gaussian noise).

Options (``--defense-arg key=value``) are declared once, in ``options``: advrp2k checks them,
sets them as attributes and records them in ``config()`` (the trained-model cache key).
"""
import torch
import torch.nn.functional as F

from advrp2k import Option, TrainingDefense, frozen_eval, project_linf, register_defense

__version__ = "0.1.0"


@register_defense("trades")
class TRADES(TrainingDefense):
    paper_id = "Zhang2019Theoretically"
    title, venue = "TRADES (Zhang et al.)", "ICML 2019"
    link = "https://arxiv.org/abs/1901.08573"
    options = {
        "beta": Option(float, 6.0, min=0, max=100, help="weight of the robustness term (the paper's CIFAR-10 value)"),
        "steps": Option(int, 3, min=1, max=100, help="inner PGD steps (the paper uses 10; 3 keeps CPU runs short)"),
        "step_size": Option(float, None, min=0, max=1, help="2.5 * eps / steps when unset",
                            derive=lambda o, eps: 2.5 * eps.value / o["steps"]),
    }

    def __init__(self, eps=None, **options):
        if eps is None:
            raise ValueError("trades needs --eps, the training budget (e.g. 8/255)")
        super().__init__(eps, **options)

    def _inner_max(self, model, x, generator):
        eps = self.eps.value
        with frozen_eval(model), torch.no_grad():
            p_clean = F.softmax(model(x), 1)
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        x_adv = project_linf(x + 0.001 * noise, x, eps)
        with frozen_eval(model):
            for _ in range(self.steps):
                x_adv.requires_grad_(True)
                with torch.enable_grad():
                    kl = F.kl_div(F.log_softmax(model(x_adv), 1), p_clean, reduction="sum")
                    grad, = torch.autograd.grad(kl, x_adv)
                x_adv = project_linf(x_adv.detach() + self.step_size * grad.sign(), x, eps)
        return x_adv.detach()

    def training_loss(self, model, x, y, generator):
        x_adv = self._inner_max(model, x, generator)
        logits = model(x)
        robust = F.kl_div(F.log_softmax(model(x_adv), 1), F.softmax(logits, 1), reduction="batchmean")
        return F.cross_entropy(logits, y) + self.beta * robust
