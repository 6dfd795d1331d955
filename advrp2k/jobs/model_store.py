"""The trained model of a job: ``--checkpoint``, else the cached model of this exact
configuration, else trained now and cached (locked, so concurrent runs train it once)."""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from advrp2k import _version
from advrp2k.core import distributed
from advrp2k.core.io import read_json, write_json
from advrp2k.core.locks import item_lock
from advrp2k.plugins.registry import DEFENSES
from advrp2k.models.backbones import FINETUNE_LR_FACTOR, arch_id, weights_identity
from advrp2k.models.factory import arch_library, initial_model
from advrp2k.models.checkpoints import check_classes, key_mismatch, read_checkpoint, save_model
from advrp2k.data import load_split
from advrp2k.plugins.defense import TestTimeDefense, create_defense
from advrp2k.core.errors import CheckpointError, DataError, UsageError
from advrp2k.jobs.job import Job, JobData
from advrp2k.models.factory import create_model
from advrp2k.models.external import check_class_order, check_output_width
from advrp2k.core.paths import cache_dir
from advrp2k.core.precision import place_model, resolve_precision
from advrp2k.core.machine import numeric_identity
from advrp2k.train.trainer import TrainSettings, train

log = logging.getLogger(__name__)
TRAINER_VERSION = 1  # bump when training code changes results, so cached models are not reused
MODEL_FILE = "model.safetensors"


def defense_for(job: Job):
    """(plugin info, defense) of the job, built and validated once per job (its defense, eps,
    options and protocol): the refusal check, the model store and the entry share it."""
    key = (job.defense, job.eps, repr(job.defense_args), repr(job.protocol))
    cached = job.__dict__.get("_resolved_defense")
    if cached is not None and cached[0] == key:
        return cached[1]
    resolved = _build_defense(job)
    job.__dict__["_resolved_defense"] = (key, resolved)
    return resolved


def _build_defense(job: Job):
    info = DEFENSES.info(job.defense)
    if not getattr(info.obj, "trains", True) and job.given is None and job.checkpoint is None:
        raise UsageError(f"defense {job.defense!r} labels a model trained elsewhere and trains nothing: pass "
                         f"--model FILE.py:FACTORY (with --weights FILE) or --arch NAME --weights FILE")
    needs_eps = getattr(info.obj, "needs_eps", True)
    if needs_eps and job.eps is None:
        raise UsageError(f"defense {job.defense!r} needs --eps, its training budget (e.g. --eps 8/255)")
    # What the protocol sets for this defense (a plugin's own hook), under --defense-arg's values.
    from_protocol = getattr(info.obj, "protocol_options", None)
    options = {**(from_protocol(job.protocol) if from_protocol else {}), **job.defense_args}
    try:
        return info, create_defense(job.defense, eps=job.eps if needs_eps else None, **options)
    except TypeError as exc:
        raise UsageError(f"bad --defense-arg for {job.defense!r}: {exc}")


def _settings(job: Job, device: torch.device) -> TrainSettings:
    """Training settings; a pretrained backbone is fine-tuned (advrp2k.models.backbones' protocol) and
    the identity of its weights is part of the settings, so another file is another model."""
    p = job.protocol
    init = weights_identity(p.arch, job.pretrained, job.model_dir)
    lr = p.lr * FINETUNE_LR_FACTOR if init else p.lr
    library = arch_library(p.arch)  # timm's version: its architectures drift between versions
    extra = {**({"init": init} if init else {}), **({"arch_library": library} if library else {})}
    return TrainSettings(epochs=p.epochs, batch_size=p.batch_size, lr=lr, momentum=p.momentum,
                         weight_decay=p.weight_decay, lr_decay_every=p.lr_decay_every, seed=job.seed,
                         precision=resolve_precision(job.precision, device), augment=job.augment,
                         extra=extra)


def _training_of(job: Job, defense, prep: JobData, device):
    """(defense name, defense, settings, cache key) of the training behind the job's model: a
    test-time defense wraps the model its base defense trains."""
    base_name, base = (defense.base_defense, create_defense(defense.base_defense)) \
        if isinstance(defense, TestTimeDefense) else (job.defense, defense)
    settings = _settings(job, device)
    return base_name, base, settings, _train_key(prep, job.protocol.arch, base_name, base.config(), settings)


def _train_key(prep: JobData, arch: str, defense_name: str, defense_cfg: dict, settings: TrainSettings) -> str:
    blob = json.dumps([TRAINER_VERSION, prep.scan.fingerprint, prep.scan.classes, prep.image_size, arch,
                       defense_name, defense_cfg, settings.to_dict()], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class LoadedModel:
    """A model ready to evaluate, and the checkpoint it came from."""

    model: torch.nn.Module
    path: Path
    record: dict
    sha256: str  # of the very bytes the weights were read from
    train_wall: float | None  # seconds this model took to train (None: unknown, e.g. --checkpoint)
    reused: bool  # True: loaded, not trained by this run
    # CPU threads per process in its training: on a CPU, float sums (hence the trained weights) are
    # reproducible bit for bit only at the same count.
    train_threads: int | None = None
    # The training machine's numeric identity (advrp2k.core.machine); None: not recorded.
    train_numeric: dict | None = None


def get_model(job: Job, prep: JobData, device: torch.device) -> LoadedModel:
    """Load ``--checkpoint``, else the cached model of this exact config, else train one.

    Runs sharing a cache hold the model's lock: a second run of the same config waits for the
    first to finish training and then reuses its model, never trains it twice.
    """
    info, defense = defense_for(job)
    if job.given is not None:
        return _given_model(job, prep, device)
    if job.checkpoint is not None:
        ckpt = read_checkpoint(job.checkpoint)
        check_classes(ckpt.record, prep.scan.classes, job.checkpoint)
        model = _model_from_state(ckpt.record, ckpt.state, len(prep.scan.classes), job.checkpoint)
        return LoadedModel(_maybe_wrap(defense, model), Path(job.checkpoint), ckpt.record, ckpt.sha256, None, True)
    base_name, base, settings, key = _training_of(job, defense, prep, device)
    folder = cache_dir("models", key)
    path = folder / MODEL_FILE
    # Under torchrun the main process holds the lock and decides; every process trains together.
    with item_lock(folder, f"the model {base_name} (cache {folder})") if distributed.is_main() else nullcontext():
        found = _cached_model(path, prep) if distributed.is_main() else None
        trained = distributed.broadcast(found is None if distributed.is_main() else None)
        if trained:
            _train_and_save(job, prep, device, base_name, base, settings, folder)
        distributed.barrier()
        ckpt, model = found if found is not None else _cached_model(path, prep)
    side = _read_side_record(folder)
    return LoadedModel(_maybe_wrap(defense, model), path, ckpt.record, ckpt.sha256, side.get("train_wall_s"),
                       reused=not trained, train_threads=side.get("threads"), train_numeric=side.get("numeric_identity"))


def _given_model(job: Job, prep: JobData, device) -> LoadedModel:
    """The user's own model (``--model``/``--weights`` or ``advrp2k.benchmark``), checked against
    the data: its class order and its output width. Nothing is trained or cached."""
    given = job.given
    module = given.materialize(len(prep.scan.classes))
    check_class_order(given.classes, prep.scan.classes)
    check_output_width(module.to(device), prep.image_size, len(prep.scan.classes), device)
    record = {"arch": given.arch, "arch_id": given.name, "classes": prep.scan.classes, "image_size": prep.image_size,
              "model_source": given.source,
              **({"arch_library": given.source["arch_library"]} if given.source.get("arch_library") else {})}
    return LoadedModel(module.eval(), Path(given.source.get("weights") or given.arch), record,
                       given.weights_sha256(), None, True)


def training_estimate(job: Job, prep: JobData, device) -> float | None:
    """Seconds the job's training would take here, or None when its model is cached (or given):
    a throwaway copy of the initial model takes timed training steps of the job's own defense,
    multiplied by the batches of every epoch. An estimate: the first epoch also decodes the data."""
    import math

    from advrp2k.train.trainer import seconds_per_batch

    if job.given is not None or job.checkpoint is not None:
        return None
    _, base, settings, key = _training_of(job, defense_for(job)[1], prep, device)
    if (cache_dir("models", key) / MODEL_FILE).is_file():
        return None
    x, y = load_split(prep.scan, "train", prep.image_size, progress=job.progress)
    model = create_model(job.protocol.arch, len(prep.scan.classes))
    per_batch = seconds_per_batch(model, base, x, y, settings, device)
    return per_batch * math.ceil(len(y) / settings.batch_size) * settings.epochs


def _cached_model(path: Path, prep: JobData):
    """(checkpoint, model) from the model cache, or None when missing or unusable."""
    if not path.is_file():
        return None
    try:
        ckpt = read_checkpoint(path)
        return ckpt, _model_from_state(ckpt.record, ckpt.state, len(prep.scan.classes), path)
    except CheckpointError as exc:
        log.warning("retraining: cached model unusable (%s)", exc)
        return None


def _train_and_save(job: Job, prep: JobData, device, base_name: str, base, settings: TrainSettings,
                    folder: Path) -> None:
    """Train, then write the model (content only: identical trainings give identical files) and,
    beside it, what varies between identical trainings (wall time, device, date)."""
    arch = job.protocol.arch
    torch.manual_seed(job.seed)
    model, backbone = initial_model(arch, job.pretrained, len(prep.scan.classes), job.model_dir)
    x, y = load_split(prep.scan, "train", prep.image_size, progress=job.progress)
    if not len(y):
        raise DataError(f"no usable training images under {prep.source.root}/all/train")
    t0 = time.perf_counter()
    train(place_model(model, settings.precision, device, job.compile), base, x, y, settings, folder / "run", device,
          progress=job.progress)
    wall = time.perf_counter() - t0
    record = {"arch": arch, "arch_id": arch_id(arch, job.pretrained) + ("-augpaper" if job.augment == "paper" else ""),
              "backbone": backbone, **({"arch_library": library} if (library := arch_library(arch)) else {}),
              "classes": prep.scan.classes, "image_size": prep.image_size, "defense": base_name,
              "defense_config": base.config(), "train_settings": settings.to_dict(),
              "dataset": prep.source.name, "dataset_fingerprint": prep.scan.fingerprint,
              "advrp2k_version": _version.__version__}
    if distributed.is_main():
        save_model(folder / MODEL_FILE, model, record)
        write_json(folder / "training.json", {"train_wall_s": wall, "device": str(device), "processes":
                                              distributed.world_size(), "threads": torch.get_num_threads(),
                                              "numeric_identity": numeric_identity(str(device)),
                                              "date": datetime.datetime.now().isoformat(timespec="seconds")})


def _read_side_record(folder: Path) -> dict:
    try:
        side = read_json(folder / "training.json")
        return side if isinstance(side, dict) else {}
    except (OSError, ValueError):
        return {}


def _model_from_state(record: dict, state: dict, num_classes: int, path):
    model = create_model(record["arch"], num_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit arch {record['arch']!r} with {num_classes} "
                              f"classes: {key_mismatch(model.state_dict(), state) or str(exc).splitlines()[0]}")
    return model.eval()


def _maybe_wrap(defense, model):
    return defense.wrap(model).eval() if isinstance(defense, TestTimeDefense) else model
