"""Models the user brings: a factory of their own (``--model FILE.py:FACTORY``), an ``nn.Module``
handed to ``advrp2k.benchmark``, or an arch (timm's too) with weights read into it
(``--weights``: safetensors, or a state dict read with ``weights_only=True``).

Every such model takes ``[0, 1]`` images and normalises inside itself, as advrp2k's own archs
and RobustBench's models do; ``with_normalization`` wraps one that expects normalised input.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from advrp2k.core.errors import CheckpointError, UsageError
from advrp2k.models.architectures import MEAN, STD, Normalize
from advrp2k.models.factory import arch_library, create_model

def with_normalization(model: nn.Module, mean=MEAN, std=STD) -> nn.Module:
    """Wrap a model that expects normalised input so that it takes ``[0, 1]`` images, as every
    attack and advrp2k's evaluation assume: ``Sequential(Normalize(mean, std), model)``."""
    return nn.Sequential(Normalize(mean, std), model)


@dataclass
class GivenModel:
    """A model the user brings: the module (or how to build it once the number of classes is
    known), what it is called, and where it came from.

    ``classes`` is the model's output order: a list of SKU names, or ``"dataset"`` (the data's
    own order, ``advrp2k data classes``). It is checked against the data before any work.
    """

    arch: str  # "python:<file>:<factory>", "python:<module>.<class>", "timm:<name>", a registered arch
    name: str  # the model id's part: letters, digits, "-" and "_"
    classes: list[str] | str = "dataset"
    source: dict = field(default_factory=dict)  # factory, weights file and its SHA-256, library version
    module: nn.Module | None = None
    build: Callable[[int], nn.Module] | None = None  # num_classes -> module (fills source as it reads)

    def materialize(self, num_classes: int) -> nn.Module:
        """The module, built now if it was given as a factory."""
        if self.module is None:
            self.module = self.build(num_classes)
        return self.module

    def weights_sha256(self) -> str:
        """SHA-256 of the weights: the file's bytes when read from one, else of the state dict
        serialised canonically (safetensors, sorted keys), so the same weights give the same value."""
        return self.source.get("weights_sha256") or state_sha256(self.module)


def given_from_files(model_spec: str | None, weights: str | Path | None, arch: str, classes, name: str | None) -> GivenModel:
    """The model of ``eval --model FILE.py:FACTORY`` and/or ``--weights FILE`` (with ``--arch``
    when no factory is named). Nothing is imported or read until the data's classes are known.

    Args:
        classes: ``"dataset"``, a list of SKU names, or None to take the class list the weights'
            advrp2k record carries (refused when it carries none).
    """
    label = f"python:{Path(model_spec.rpartition(':')[0]).name}:{model_spec.rpartition(':')[2]}" if model_spec else arch
    given = GivenModel(arch=label, name=model_name(name or (model_spec.rpartition(":")[2] if model_spec else arch)),
                       classes=classes if classes is not None else "dataset")
    given.source = {"kind": "python file" if model_spec else "arch", "arch": label}

    def build(num_classes: int) -> nn.Module:
        module = load_factory(model_spec, num_classes)[0] if model_spec else create_model(arch, num_classes)
        library = None if model_spec else arch_library(arch)
        if library:
            given.source["arch_library"] = library
        if weights is not None:
            record, sha = load_weights(module, weights, label)
            given.source.update({"weights": Path(weights).name, "weights_sha256": sha})
            if classes is None and isinstance(record.get("classes"), list):
                given.classes = record["classes"]
        if classes is None and not isinstance(given.classes, list):
            raise UsageError("say the model's class order: --classes dataset (the data's order, 'advrp2k data "
                             "classes' lists it) or --classes FILE (one SKU name per line)")
        return module

    given.build = build
    return given


def state_sha256(model: nn.Module) -> str:
    from safetensors.torch import save as st_save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return hashlib.sha256(st_save(dict(sorted(tensors.items())))).hexdigest()


def model_name(text: str) -> str:
    """``text`` as a model-id part (letters, digits, ``-`` and ``_``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")
    if not cleaned:
        raise UsageError(f"model name {text!r} has no letters or digits: pass --name NAME")
    return cleaned[:60]


def load_factory(spec: str, num_classes: int) -> tuple[nn.Module, str]:
    """Build the model of ``FILE.py:FACTORY``: the file is the user's own code and is imported
    (so it runs, as any Python file you import does); ``FACTORY`` is called with
    ``num_classes=`` when it takes that argument, else with none.

    Returns:
        (module, its arch name ``python:<file name>:<factory>``).
    """
    path_text, sep, factory_name = spec.rpartition(":")
    path = Path(path_text)
    if not sep or not factory_name.isidentifier() or path.suffix != ".py":
        raise UsageError(f"--model {spec!r} is not FILE.py:FACTORY (e.g. --model mynet.py:build)")
    if not path.is_file():
        raise UsageError(f"--model: {path} is not a file")
    module = _import_file(path)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UsageError(f"--model: {path} defines no function {factory_name!r}")
    takes_classes = "num_classes" in inspect.signature(factory).parameters
    model = factory(num_classes=num_classes) if takes_classes else factory()
    if not isinstance(model, nn.Module):
        raise UsageError(f"--model: {factory_name}() returned {type(model).__name__}, not a torch.nn.Module")
    return model, f"python:{path.name}:{factory_name}"


def _import_file(path: Path):
    name = f"advrp2k_user_model_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UsageError(f"--model: importing {path} failed: {type(exc).__name__}: {exc}") from None
    return module


def read_weights_file(path: str | Path) -> tuple[dict, dict, str]:
    """Weights for a given model: a safetensors file (preferred; its advrp2k record, if any, is
    returned too) or a ``.pt``/``.pth`` state dict read with ``torch.load(weights_only=True)``,
    so a pickled full model is refused and nothing in it runs.

    Returns:
        (state dict, record, SHA-256 of the bytes read).
    """
    from advrp2k.models.checkpoints import load_safetensors, read_weights

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--weights {path} is not a file")
    data = path.read_bytes()
    if path.suffix == ".safetensors" or data[8:9] == b"{":
        state, record = load_safetensors(path, data)
        return state, record, hashlib.sha256(data).hexdigest()
    state, sha = read_weights(path, data)
    return state, {}, sha


def load_weights(model: nn.Module, path: str | Path, arch: str) -> tuple[dict, str]:
    """Read ``path`` into ``model`` (strict: every key, every shape). Returns (record, SHA-256).

    Raises:
        CheckpointError: the keys or shapes do not fit, said so a user can fix it.
    """
    from advrp2k.models.checkpoints import key_mismatch

    state, record, sha = read_weights_file(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = key_mismatch(model.state_dict(), state) or str(exc).splitlines()[0]
        raise CheckpointError(f"--weights {path} do not fit the model {arch}: {detail}") from None
    return record, sha


def check_output_width(model: nn.Module, image_size: int, num_classes: int, device) -> None:
    """One forward pass on a grey image: the model must give ``num_classes`` finite logits."""
    model.eval()
    with torch.no_grad():
        try:
            out = model(torch.full((1, 3, image_size, image_size), 0.5, device=device))
        except Exception as exc:
            raise UsageError(f"the model failed on a 1x3x{image_size}x{image_size} image in [0, 1]: "
                             f"{type(exc).__name__}: {exc}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(f"the model gives {shape} for one image; the data has {num_classes} classes, so it must "
                         f"give (1, {num_classes}) logits")


def read_class_file(path: str | Path) -> list[str]:
    """SKU names, one per line (UTF-8; blank lines ignored), in the model's output order."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--classes {path} is not a file: pass dataset or a file of SKU names, one per line")
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise UsageError(f"--classes {path} is not UTF-8 text: save it as UTF-8, one SKU name per line") from None
    if not names:
        raise UsageError(f"--classes {path} names no SKU")
    return names


def check_class_order(given: list[str] | str, classes: list[str]) -> None:
    """The model's output order must be the data's: refuse another order or another class set.

    Raises:
        UsageError: saying what differs and what to do.
    """
    if isinstance(given, str):
        if given != "dataset":
            raise UsageError(f"classes={given!r}: pass 'dataset' (the data's order) or the list of SKU names")
        return
    given = list(given)
    if given == classes:
        return
    if sorted(given) == sorted(classes):
        first = next(i for i, (a, b) in enumerate(zip(given, classes)) if a != b)
        raise UsageError(f"the model's classes are the data's {len(classes)} SKUs in another order (first difference "
                         f"at output {first}: {given[first]!r}, where the data has {classes[first]!r}): permute "
                         f"the model's outputs to the data's order (advrp2k data classes lists it), or evaluate "
                         f"on the data it was trained on")
    only_model, only_data = sorted(set(given) - set(classes))[:3], sorted(set(classes) - set(given))[:3]
    raise UsageError(f"the model has {len(given)} classes and the data {len(classes)}; only in the model: "
                     f"{only_model}; only in the data: {only_data}: evaluate it on the data it was trained on")
