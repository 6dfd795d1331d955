"""What one ``advrp2k eval``/``train`` run is (``Job``) and the data it runs on (``JobData``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from advrp2k.core.eps import Eps
from advrp2k.core.paths import results_home
from advrp2k.plugins.attack_spec import AttackSpec
from advrp2k.models.checkpoints import read_checkpoint
from advrp2k.models.external import GivenModel
from advrp2k.data import DataSource, locate_data, scan_rp2k
from advrp2k.data.tables import read_attributes
from advrp2k.core.errors import DataError, UsageError
from advrp2k.jobs.protocols import Protocol


@dataclass
class Job:
    """Everything one ``advrp2k eval``/``train`` run needs; defaults come from the protocol."""

    defense: str
    protocol: Protocol
    eps: Eps | None = None
    defense_args: dict = field(default_factory=dict)
    dataset: str | None = None
    data: Path | None = None
    checkpoint: Path | None = None
    device: str = "auto"
    seed: int = 0
    attacks: list[AttackSpec] | None = None
    attack_eps: list[Eps] | None = None
    leaderboard: Path = field(default_factory=results_home)  # ./advrp2k-results unless named
    batch_size_eval: int | None = None  # None: default_eval_batch_size(device)
    n_examples: int | None = None
    progress: Callable | None = None
    reuse_entry: bool = False  # skip evaluation when the existing entry matches model, data and attacks
    per_attack: bool = True  # standalone numbers per attack (False: cascade, worst case only)
    restart: bool = False  # discard saved per-example results instead of resuming from them
    attributes: Path | None = None  # per-SKU attribute CSV; default: attributes.csv beside meta.csv
    hand_fields: dict = field(default_factory=dict)  # submitter's name, authors, link... (validated first)
    escalate: bool = True  # when a check fires, run the attack it calls for (advrp2k.eval.escalation)
    precision: str = "auto"  # attack and training steps: auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16
    compile: bool = False  # torch.compile the model for attack and training steps
    pretrained: str | None = None  # "imagenet": torchvision weights (--arch rb:<Name> for RobustBench)
    model_dir: Path | None = None  # where pretrained weights are read from (default $ADVRP2K_HOME/weights)
    augment: str = "none"  # training augmentation: none, or paper (the RP2K paper's Sec. 4.2)
    explicit: dict = field(default_factory=dict)  # protocol fields set on the command line (arch, image_size)
    force: bool = False  # replace an entry even when this evaluation is weaker (fewer attacks, eps or images)
    given: GivenModel | None = None  # the user's own model (--model/--weights, advrp2k.benchmark): not trained
    threat: str = "linf"  # the threat model (advrp2k.core.threat) the suite attacks under

    def suite(self) -> list[AttackSpec]:
        """The attack suite under the job's threat model: the one asked for, else the threat
        model's default (the protocol's PGD for l_inf, l2 and ticket switching)."""
        specs = self.attacks or attack_specs(list(_threat_defaults(self.threat)), self.protocol, self.threat)
        return [s if s.threat == self.threat else s.under(self.threat) for s in specs]


def _threat_defaults(threat: str) -> tuple[str, ...]:
    from advrp2k.core.threat import threat_model

    return threat_model(threat).default_attacks


def default_attacks(protocol: Protocol) -> list[AttackSpec]:
    return [AttackSpec("pgd", {"steps": protocol.eval_steps, "restarts": protocol.eval_restarts})]


def attack_specs(names: list[str], protocol: Protocol, threat: str = "linf") -> list[AttackSpec]:
    """The suite named by ``names`` (``eval --attacks``, ``benchmark(attacks=...)``) under ``threat``:
    ``pgd`` with the protocol's steps and restarts, every other attack with its declared defaults.
    An unknown name is refused with the closest known one, an attack that does not serve the
    threat model with the ones it serves."""
    from advrp2k.plugins.registry import ATTACKS

    for name in names:
        served = getattr(ATTACKS.info(name).obj, "threats", ("linf",))
        if threat not in served:
            raise UsageError(f"attack {name} does not serve threat model {threat} (it serves {', '.join(served)}): "
                             f"'advrp2k list attacks' says which attacks serve which threat model")
    return [default_attacks(protocol)[0].under(threat) if n == "pgd" else AttackSpec(n, threat=threat) for n in names]


@dataclass
class JobData:
    source: DataSource
    scan: object
    image_size: int


def load_job_data(job: Job) -> JobData:
    attributes = None
    if job.attributes is not None:  # checked before the scan, which may decode every image
        if not Path(job.attributes).is_file():
            raise UsageError(f"--attributes {job.attributes} is not a file: pass a CSV with a 'sku' column")
        attributes = read_attributes(job.attributes)
    source = locate_data(job.dataset, job.data, job.progress)
    scan = scan_rp2k(source.root, progress=job.progress)
    if attributes is not None:
        scan.attributes = attributes
    if not scan.samples["test"]:
        raise DataError(f"no usable test images under {source.root}/all/test: run 'advrp2k data inspect' to see why")
    if len(scan.classes) < 2:
        raise DataError(f"{source.root} holds {len(scan.classes)} SKU: a classifier needs at least two classes, "
                        f"so accuracy would mean nothing; point --data at the whole release")
    size = checkpoint_settings(job).get("image_size") or job.protocol.image_size or source.default_image_size
    return JobData(source, scan, size)


def checkpoint_settings(job: Job, record: dict | None = None) -> dict:
    """What ``--checkpoint``'s record states about the input (``image_size``, ``arch``); empty
    without a checkpoint. The model's normalisation needs no setting: it is a layer inside the
    model, its mean and std in the weights.

    Args:
        record: the checkpoint's record when the caller has read it already.

    Raises:
        UsageError: a value given on the command line contradicts the record.
        CheckpointError: the checkpoint is unreadable or unsafe.
    """
    if job.checkpoint is None:
        return {}
    record = record if record is not None else read_checkpoint(job.checkpoint).record
    stated = {k: record[k] for k in ("image_size", "arch") if record.get(k) is not None}
    for key, value in stated.items():
        given = job.explicit.get(key)
        if given is not None and given != value:
            option = "--" + key.replace("_", "-")
            raise UsageError(f"--checkpoint {job.checkpoint} was trained with {key} {value!r}, but {option} says "
                             f"{given!r}: leave out {option} (the checkpoint's value is used) or pass "
                             f"{option} {value}")
    return stated
