"""FGSM adversarial training with a random start (Wong, Rice, Kolter 2020, "Fast is better
than free: Revisiting adversarial training", arXiv:2001.03994).

Option (``--defense-arg key=value``), declared once in ``options``: ``step_size``
(``1.25 * eps`` when unset, the paper's alpha).

One gradient step per batch instead of PGD's k: roughly the cost of standard training
times two. It reuses the ``fgsm`` attack plugin with ``random_start=True``.
"""
from advrp2k import AdversarialTraining, Option, create_attack, register_defense


@register_defense("fast_fgsm")
class FastFGSM(AdversarialTraining):
    paper_id = "Wong2020Fast"
    title, venue = "FGSM training with a random start (Wong et al.)", "ICLR 2020"
    link = "https://arxiv.org/abs/2001.03994"
    options = {"step_size": Option(float, None, min=0, max=1, help="1.25 * eps when unset",
                                   derive=lambda o, eps: 1.25 * eps.value)}

    def __init__(self, eps=None, **options):
        if eps is None:
            raise ValueError("fast_fgsm needs --eps, the training budget (e.g. 8/255)")
        super().__init__(eps, **options)
        self.attack = create_attack("fgsm", eps, step_size=self.step_size, random_start=True)
