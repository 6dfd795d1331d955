"""PGD adversarial training (Madry et al. 2018, arXiv:1706.06083): minimise the loss at the
PGD point of each training example.

Options (``--defense-arg key=value``), declared once in ``options``: ``steps`` (7 PGD steps per
batch, Madry et al.'s CIFAR-10 setting; the quick protocol trains with 3) and ``step_size``
(``2.5 * eps / steps`` when unset).

It reuses the very ``pgd`` attack plugin that evaluation uses, with a random start and
without early stopping (training wants the loss-maximising point, not the first fooling one).
The attack runs the model in eval mode, so generating examples never moves BatchNorm statistics.
"""
from advrp2k import AdversarialTraining, Option, create_attack, register_defense


@register_defense("madry")
class MadryAT(AdversarialTraining):
    paper_id = "Madry2018Towards"
    title, venue = "PGD adversarial training (Madry et al.)", "ICLR 2018"
    link = "https://arxiv.org/abs/1706.06083"
    options = {"steps": Option(int, 7, min=1, max=1_000, help="PGD steps per training batch"),
               "step_size": Option(float, None, min=0, max=1, help="2.5 * eps / steps when unset",
                                   derive=lambda o, eps: 2.5 * eps.value / o["steps"])}

    @classmethod
    def protocol_options(cls, protocol) -> dict:
        return {"steps": protocol.madry_steps}  # the protocol's PGD steps per batch (quick 3, paper 7)

    def __init__(self, eps=None, **options):
        if eps is None:
            raise ValueError("madry needs --eps, the training budget (e.g. 8/255)")
        super().__init__(eps, **options)
        self.attack = create_attack("pgd", eps, steps=self.steps, step_size=self.step_size, early_stop=False)
