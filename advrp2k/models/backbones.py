"""Pretrained backbones: torchvision's ImageNet weights (``--pretrained imagenet``) and
RobustBench's adversarially trained ImageNet models (``--arch rb:<Name>``, e.g.
``rb:Salman2020Do_R18``), with the classifier head replaced for the dataset's SKUs.

Weights are never downloaded at run time: they are read from a local folder (``--model-dir``,
default ``$ADVRP2K_HOME/weights``; torch hub's checkpoint folder is also searched for
torchvision files), with the same rules as ``--checkpoint``: ``torch.load(weights_only=True)``
passed explicitly, so a pickle that would run code is refused without running it. The model's
input normalisation stays inside the model.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from advrp2k.models.checkpoints import read_weights
from advrp2k.core.errors import CheckpointError, UsageError
from advrp2k.models.architectures import Normalize

RB_PREFIX = "rb:"
#: Architectures with torchvision ImageNet weights -> the name of their weights enum in
#: torchvision.models (imported when used: torchvision takes seconds to import).
TORCHVISION = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights", "resnet50": "ResNet50_Weights"}


def default_model_dir() -> Path:
    from advrp2k.core.paths import cache_home

    return cache_home() / "weights"


#: Fine-tuning protocol for a pretrained backbone: the protocol's learning rate times this, for the
#: protocol's epochs and schedule, every layer trained (Salman et al. 2020 fine-tune all layers).
FINETUNE_LR_FACTOR = 0.1


def weights_identity(arch: str, pretrained: str | None, model_dir) -> dict | None:
    """What identifies the starting weights (kind and file SHA-256), found before any work; None
    from scratch. A missing or unsafe file fails here, with the message saying where to put it."""
    found = _weights_file(arch, pretrained, model_dir)
    if found is None:
        return None
    path, name, source = found
    return {"name": name, "source": source, "sha256": _checked_sha256(path)}


def _weights_file(arch: str, pretrained: str | None, model_dir) -> tuple[Path, str, str] | None:
    """``(file, name, source)`` of the starting weights; None from scratch."""
    if arch.startswith(RB_PREFIX):
        name = arch[len(RB_PREFIX):]
        _zoo_entry(name)
        return _robustbench_file(name, model_dir), name, "robustbench (ImageNet, Linf)"
    if pretrained == "imagenet":
        return _torchvision_file(arch, model_dir), f"{arch} (ImageNet, torchvision IMAGENET1K_V1)", "torchvision"
    if pretrained not in (None, "none"):
        raise UsageError(f"unknown --pretrained {pretrained!r}: use imagenet (or --arch rb:<RobustBench model>)")
    return None


def _checked_sha256(path: Path) -> str:
    """The file is checked (no code runs) and hashed, once per version of it in a process: the
    job check and the training key ask for the same file."""
    st = path.stat()
    return _checked_sha256_of(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _checked_sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return read_weights(path)[1]


def arch_id(arch: str, pretrained: str | None) -> str:
    """The architecture as it appears in model ids: ``rb-Salman2020Do_R18``, ``resnet18-in1k``."""
    if arch.startswith(RB_PREFIX):
        return "rb-" + arch[len(RB_PREFIX):]
    arch = arch.replace(":", "-")  # timm:resnet18 -> timm-resnet18 (ids are file names)
    return f"{arch}-in1k" if pretrained == "imagenet" else arch


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the last ``nn.Linear`` for a fresh one with ``num_classes`` outputs (in place)."""
    name = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    old = parent.get_submodule(name.rpartition(".")[2])
    setattr(parent, name.rpartition(".")[2], nn.Linear(old.in_features, num_classes))
    return model


def torchvision_imagenet(arch: str, num_classes: int, path: Path) -> tuple[nn.Module, str]:
    """``arch`` (resnet18/34/50) with torchvision's ImageNet weights from ``path``; head replaced.
    Returns the model and the file's SHA-256."""
    state, sha = read_weights(path)
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None, num_classes=1000)
    _load(net, state, path)
    return nn.Sequential(Normalize(), replace_head(net, num_classes)), sha


def _torchvision_file(arch: str, model_dir) -> Path:
    """torchvision's ImageNet weights file for ``arch`` in the model folder or torch hub's cache."""
    if arch not in TORCHVISION:
        raise UsageError(f"--pretrained imagenet is available for {', '.join(TORCHVISION)} (not {arch!r})")
    import torchvision

    url = getattr(torchvision.models, TORCHVISION[arch]).IMAGENET1K_V1.url
    fname = url.rsplit("/", 1)[1]
    folders = [Path(model_dir or default_model_dir()), Path(torch.hub.get_dir()) / "checkpoints"]
    path = next((f / fname for f in folders if (f / fname).is_file()), None)
    if path is None:
        raise CheckpointError(f"ImageNet weights for {arch} not found: put {fname} (from {url}) in "
                              f"{folders[0]} or pass --model-dir DIR holding it; nothing is downloaded at run time")
    return path


def _robustbench_file(name: str, model_dir) -> Path:
    """``<model_dir>/imagenet/Linf/<name>.pt``, RobustBench's own layout."""
    path = Path(model_dir or default_model_dir()) / "imagenet" / "Linf" / f"{name}.pt"
    if not path.is_file():
        raise CheckpointError(f"RobustBench weights for {name} not found: put {name}.pt (RobustBench's model zoo, "
                              f"ImageNet, Linf) at {path}, or pass --model-dir DIR with DIR/imagenet/Linf/{name}.pt; "
                              f"nothing is downloaded at run time")
    return path


def robustbench_skeleton(name: str, num_classes: int) -> nn.Module:
    """The architecture of RobustBench ImageNet l_inf model ``name`` (no weights), head replaced."""
    return replace_head(_zoo_entry(name)["model"](), num_classes)


def robustbench_pretrained(name: str, num_classes: int, path: Path) -> tuple[nn.Module, str]:
    """RobustBench ImageNet l_inf model ``name`` loaded through ``robustbench.utils.load_model`` from
    ``path`` (``<model_dir>/imagenet/Linf/<name>.pt``); head replaced. Returns the model and the
    file's SHA-256."""
    from advrp2k.core.compat import import_robustbench

    _, sha = read_weights(path)  # refuses a code-running pickle before robustbench touches the file
    import_robustbench()
    from robustbench.utils import load_model

    try:
        model = load_model(name, model_dir=str(path.parents[2]), dataset="imagenet", threat_model="Linf")
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"robustbench could not load {path} as {name}: {str(exc).splitlines()[0][:200]}")
    return replace_head(model, num_classes), sha


def _zoo_entry(name: str) -> dict:
    from advrp2k.core.compat import import_robustbench

    import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    zoo = model_dicts[BenchmarkDataset.imagenet][ThreatModel.Linf]
    if name not in zoo:
        raise UsageError(f"--arch rb:{name}: not a RobustBench ImageNet Linf model; known include "
                         f"{', '.join(sorted(zoo)[:8])}, ...")
    return zoo[name]


def _load(net: nn.Module, state: dict, path: Path) -> None:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit this architecture ({str(exc).splitlines()[0][:200]})")
