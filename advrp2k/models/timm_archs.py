"""timm architectures (``--arch timm:<name>``): any timm model, randomly initialised, behind
advrp2k's ``Normalize`` layer. timm is optional (``pip install 'advrp2k[timm]'``)."""
from __future__ import annotations

from torch import nn

from advrp2k.core.errors import UsageError
from advrp2k.models.architectures import MEAN, STD, Normalize

TIMM_PREFIX = "timm:"


def timm_module():
    """The ``timm`` module, or one clear line on how to install it."""
    try:
        import timm
    except ImportError:
        raise UsageError("timm is not installed: pip install 'advrp2k[timm]' (or pip install timm) to use "
                         "--arch timm:<name>") from None
    return timm


def check_timm_name(name: str):
    """The ``timm`` module when it has a model ``name``; else one line naming close matches."""
    timm = timm_module()
    if name not in timm.list_models():
        close = timm.list_models(f"*{name}*")[:5]
        hint = f" (close: {', '.join(close)})" if close else " (timm.list_models() lists them)"
        raise UsageError(f"timm has no model {name!r}{hint}")
    return timm


def timm_model(name: str, num_classes: int) -> nn.Module:
    """timm's ``name`` with a fresh head of ``num_classes`` outputs, randomly initialised
    (``pretrained=False``: nothing is downloaded), behind a ``Normalize`` layer holding the
    architecture's own mean and std from its timm config."""
    net = check_timm_name(name).create_model(name, pretrained=False, num_classes=num_classes)
    cfg = getattr(net, "pretrained_cfg", None) or {}
    mean, std = tuple(cfg.get("mean", MEAN)), tuple(cfg.get("std", STD))
    return nn.Sequential(Normalize(mean, std), net)


def timm_library() -> dict:
    """What the record and the train key say about the library that builds ``timm:`` archs."""
    return {"name": "timm", "version": timm_module().__version__}
