"""The Python entry point: ``advrp2k.benchmark(model, classes="dataset")`` evaluates any
``torch.nn.Module`` that maps ``[0, 1]`` images to logits, with the same suite, checks,
escalation, intervals and analyses as ``advrp2k eval``, and returns a ``BenchmarkResult``.

    import advrp2k
    result = advrp2k.benchmark(my_model, classes="dataset")   # the embedded stand-in (synthetic)
    print(result)                                               # clean and robust accuracy, intervals

It runs the CLI's own pipeline (``advrp2k.jobs.run.run_eval``) with the model handed over, so
the same weights give the same numbers either way.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from advrp2k.core.errors import UsageError



@dataclass
class BenchmarkResult:
    """What one benchmark run found. Accuracies are fractions in [0, 1]; ``ci95`` holds 95 %
    intervals; ``examples`` is the per-example table (one row per test image); ``entry`` is the
    leaderboard entry as written (``path``: where, or None when no leaderboard was asked for)."""

    entry: dict
    examples: object  # pandas.DataFrame
    path: Path | None = None
    flags: list = field(default_factory=list)

    @property
    def clean_acc(self) -> float:
        return self.entry["clean_acc"]

    @property
    def robust_acc(self) -> dict[str, float]:
        return dict(self.entry["robust_acc"])

    @property
    def per_attack(self) -> dict:
        return dict(self.entry.get("per_attack", {}))

    @property
    def ci95(self) -> dict:
        return self.entry.get("ci95", {})

    @property
    def synthetic(self) -> bool:
        return bool(self.entry["synthetic"])

    def __str__(self) -> str:
        from advrp2k.board.entry_text import format_entry

        return format_entry(self.entry)


def benchmark(model, *, classes, data=None, dataset: str | None = None, threat: str = "linf",
              eps: Sequence[str] | None = None, attacks=None, n_examples: int | None = None,
              device: str = "auto", leaderboard=None, name: str | None = None, image_size: int | None = None,
              seed: int = 0, batch_size: int | None = None, escalate: bool = True,
              protocol: str = "quick") -> BenchmarkResult:
    """Evaluate ``model`` under the benchmark's attacks and checks.

    Args:
        model: a ``torch.nn.Module`` taking ``[0, 1]`` float images (N, 3, H, W) and returning
            logits; normalisation belongs inside it (``advrp2k.with_normalization`` wraps one that
            expects normalised input).
        classes: the model's output order: ``"dataset"`` (the data's own order,
            ``advrp2k.dataset_classes()``) or the list of SKU names. Another order is refused.
        data, dataset: an RP2K copy (``data=PATH``) or a dataset plugin; default: the embedded
            stand-in ``rp2k_synth``, whose numbers are synthetic, not RP2K results.
        threat: the threat model (``advrp2k.core.threat``, docs/threat-models.md): ``linf``, ``l2``,
            ``switch`` (ticket switching: a sibling SKU within the l_inf ball), ``patch`` (a
            label-sized sticker) or ``shelf`` (shelf conditions).
        eps: budgets, as strings (``"8/255"``; l2 ``"0.5"``; patch ``"2%"``; shelf ``"3"``) or
            floats; default the threat model's (linf 4/255 and 8/255).
        attacks: None (the protocol's PGD), ``"ranking"`` (the threat model's ranking suite; l_inf:
            PGD + AutoAttack), or a list of attack plugin names.
        n_examples: the first N test images only (default: all of them).
        leaderboard: a folder to write a normal leaderboard entry (and per-example results)
            into; None writes nothing that outlives the call.
        name: the model's name in its id (``External_<name>``); default its class name.
        image_size: the input size in pixels (default: the protocol's, else the data's).
        escalate: run the attacks a check calls for (as ``eval`` does unless ``--no-escalate``).

    Raises:
        UsageError (``advrp2k.Advrp2kError``): bad arguments, a class order that is not the
            data's, or a model whose output does not fit the data.
    """
    from advrp2k.jobs.run import run_eval

    from advrp2k.core.threat import threat_model

    threat_model(threat)  # an unknown name is refused with the closest known one
    with tempfile.TemporaryDirectory(prefix="advrp2k-benchmark-") as scratch:
        job = _job(model, classes, data, dataset, eps, attacks, n_examples, device,
                   Path(leaderboard) if leaderboard is not None else Path(scratch), name, image_size, seed,
                   batch_size, escalate, protocol, threat)
        out = run_eval(job)
        examples = _examples(Path(out["path"]))
    return BenchmarkResult(out["entry"], examples, Path(out["path"]) if leaderboard is not None else None,
                           list(out["entry"].get("flags", [])))


def _job(model, classes, data, dataset, eps, attacks, n_examples, device, leaderboard, name, image_size, seed,
         batch_size, escalate, protocol, threat="linf"):
    import torch

    from advrp2k.core.eps import parse_eps
    from advrp2k.core.threat import threat_model
    from advrp2k.jobs.job import Job
    from advrp2k.jobs.protocols import get_protocol
    from advrp2k.models.external import GivenModel, model_name

    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"model is a {type(model).__name__}, not a torch.nn.Module")
    if classes is None:
        raise UsageError("say the model's class order: classes='dataset' (the data's order, "
                         "advrp2k.dataset_classes()) or the list of SKU names")
    kind = type(model)
    given = GivenModel(module=model, arch=f"python:{kind.__module__}.{kind.__qualname__}",
                       name=model_name(name or kind.__name__), classes=classes,
                       source={"kind": "python object", "class": f"{kind.__module__}.{kind.__qualname__}"})
    proto = get_protocol(protocol).override(image_size=image_size)
    return Job(defense="external", protocol=proto, data=Path(data) if data is not None else None, dataset=dataset,
               device=device, seed=seed, attacks=_attacks(attacks, proto, threat), leaderboard=leaderboard,
               attack_eps=None if eps is None else [parse_eps(str(e)) if threat == "linf"
                                                    else threat_model(threat).parse_budget(e) for e in eps],
               threat=threat,
               n_examples=n_examples, batch_size_eval=batch_size, escalate=escalate, given=given,
               explicit={"image_size": image_size} if image_size is not None else {})


def _attacks(attacks, protocol, threat: str = "linf"):
    """None: the protocol's PGD; "ranking": the threat model's ranking suite; else plugin names (or AttackSpecs)."""
    from advrp2k.jobs.job import attack_specs, default_attacks
    from advrp2k.jobs.run import ranking_suite
    from advrp2k.plugins.attack_spec import AttackSpec

    if attacks is None:
        from advrp2k.core.threat import threat_model

        return attack_specs(list(threat_model(threat).default_attacks), protocol, threat)
    if attacks == "ranking":
        return ranking_suite(threat)
    if isinstance(attacks, str):
        attacks = [a.strip() for a in attacks.split(",") if a.strip()]
    return [a if isinstance(a, AttackSpec) else attack_specs([a], protocol, threat)[0] for a in attacks]


def _examples(entry_path: Path):
    from advrp2k.analysis.results import examples_path, frame
    from advrp2k.core.io import read_json

    return frame(read_json(examples_path(entry_path)))


def dataset_classes(data=None, dataset: str | None = None) -> list[str]:
    """The data's class order (what ``classes="dataset"`` means): SKU names as the loader lists
    them, which is the order a model's outputs must follow. Same as ``advrp2k data classes``."""
    from advrp2k.data import locate_data, scan_rp2k

    source = locate_data(dataset, Path(data) if data is not None else None, None)
    return list(scan_rp2k(source.root).classes)


def load_images(split: str = "train", data=None, dataset: str | None = None, image_size: int | None = None):
    """A split of the data as the benchmark sees it, for training a model of your own: uint8
    images ``(N, 3, S, S)`` and int64 labels in the data's class order (``dataset_classes``).
    Divide by 255 for the ``[0, 1]`` floats a model takes. The embedded stand-in by default (synthetic).
    A split too large for memory comes back as a lazily decoded sequence (index it by batch)."""
    from advrp2k.data import load_split, locate_data, scan_rp2k

    if split not in ("train", "test"):
        raise UsageError(f"split {split!r}: use train or test")
    source = locate_data(dataset, Path(data) if data is not None else None, None)
    scan = scan_rp2k(source.root)
    return load_split(scan, split, image_size or source.default_image_size)
