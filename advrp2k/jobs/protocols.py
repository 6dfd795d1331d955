"""Named training/evaluation protocols: the defaults live here, in one visible place.

``quick`` is the embedded-default scale (minutes on a laptop CPU): a small CNN, 20 epochs,
batch 32, lr / 10 every 8 epochs, weight decay 5e-4, and 3 PGD steps in Madry training.
``paper`` is the RP2K paper's Sec. 4.1: ResNet-34, SGD, lr 0.1, momentum 0.9, 150 epochs,
lr / 10 every 50 epochs, "other parameters" at PyTorch defaults (so no weight decay). The
paper gives no PGD steps, step size or batch size; we use Madry et al.'s CIFAR-10 choices
(7 training steps, step size 2.5 * eps / steps; 20 evaluation steps) and batch 128.
Any field can be overridden per option on the command line.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from advrp2k.core.errors import UsageError


@dataclass(frozen=True)
class Protocol:
    name: str
    arch: str
    image_size: int | None  # None: the dataset's default
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    lr_decay_every: int
    madry_steps: int
    eval_steps: int
    eval_restarts: int

    def to_dict(self) -> dict:
        return asdict(self)

    def override(self, **changes) -> "Protocol":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PROTOCOLS = {
    "quick": Protocol("quick", arch="smallcnn", image_size=None, epochs=20, batch_size=32, lr=0.1, momentum=0.9,
                      weight_decay=5e-4, lr_decay_every=8, madry_steps=3, eval_steps=20, eval_restarts=1),
    "paper": Protocol("paper", arch="resnet34", image_size=224, epochs=150, batch_size=128, lr=0.1, momentum=0.9,
                      weight_decay=0.0, lr_decay_every=50, madry_steps=7, eval_steps=20, eval_restarts=1),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise UsageError(f"unknown protocol {name!r}: use one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
