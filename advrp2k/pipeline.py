"""End-to-end jobs the CLI calls: prepare data, train (or reuse) a model, evaluate, write the entry."""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import platform
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import _version, distributed
from ._eps import Eps
from ._registry import ATTACKS, DEFENSES
from ._io import check_output_dir, write_json
from ._locks import item_lock
from .checkpoints import check_classes, read_checkpoint, save_model
from .data import DataSource, load_split, prepare_data, scan_rp2k
from .data.rp2k import read_attributes
from .defense_base import TestTimeDefense, create_defense
from .errors import CheckpointError, DataError, UsageError
from .eval_state import EvalState
from .analyses import entry_analyses
from .backbones import FINETUNE_LR_FACTOR, arch_id, initial_model, weights_identity
from .evaluator import AttackSpec, EvalResult, evaluate
from .leaderboard import SCHEMA_VERSION, write_entry
from .models import create_model, resolve_device
from .paths import cache_dir, cache_home
from .precision import prepare_model, resolve_precision
from .protocols import Protocol
from .results import frame
from .training import TrainSettings, train

log = logging.getLogger(__name__)
TRAINER_VERSION = 1  # bump when training code changes results, so cached models are not reused


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
    leaderboard: Path = Path("leaderboard")
    batch_size_eval: int | None = None  # None: default_eval_batch_size(device)
    n_examples: int | None = None
    progress: Callable | None = None
    reuse_entry: bool = False  # skip evaluation when the existing entry matches model, data and attacks
    per_attack: bool = True  # standalone numbers per attack (False: cascade, worst case only)
    restart: bool = False  # discard saved per-example results instead of resuming from them
    attributes: Path | None = None  # per-SKU attribute CSV; default: attributes.csv beside meta.csv
    hand_fields: dict = field(default_factory=dict)  # submitter's name, authors, link... (validated first)
    escalate: bool = True  # when a check fires, run the attack it calls for (advrp2k.escalation)
    precision: str = "auto"  # attack and training steps: auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16
    compile: bool = False  # torch.compile the model for attack and training steps
    pretrained: str | None = None  # "imagenet": torchvision weights (--arch rb:<Name> for RobustBench)
    model_dir: Path | None = None  # where pretrained weights are read from (default $ADVRP2K_HOME/weights)
    augment: str = "none"  # training augmentation: none, or paper (the RP2K paper's Sec. 4.2)


@dataclass
class Prepared:
    source: DataSource
    scan: object
    image_size: int


def prepare(job: Job) -> Prepared:
    source = prepare_data(job.dataset, job.data, job.progress)
    scan = scan_rp2k(source.root, progress=job.progress)
    if job.attributes is not None:
        if not Path(job.attributes).is_file():
            raise UsageError(f"--attributes {job.attributes} is not a file: pass a CSV with a 'sku' column")
        scan.attributes = read_attributes(job.attributes)
    if not scan.samples["test"]:
        raise DataError(f"no usable test images under {source.root}/all/test: run 'advrp2k data inspect' to see why")
    if len(scan.classes) < 2:
        raise DataError(f"{source.root} holds {len(scan.classes)} SKU: a classifier needs at least two classes, "
                        f"so accuracy would mean nothing; point --data at the whole release")
    return Prepared(source, scan, job.protocol.image_size or source.default_image_size)


def _defense(job: Job):
    info = DEFENSES.info(job.defense)
    needs_eps = getattr(info.obj, "needs_eps", True)
    if needs_eps and job.eps is None:
        raise UsageError(f"defense {job.defense!r} needs --eps, its training budget (e.g. --eps 8/255)")
    options = dict(job.defense_args)
    if job.defense == "madry":
        options.setdefault("steps", job.protocol.madry_steps)
    try:
        return info, create_defense(job.defense, eps=job.eps if needs_eps else None, **options)
    except TypeError as exc:
        raise UsageError(f"bad --defense-arg for {job.defense!r}: {exc}")


def _settings(job: Job, device: torch.device) -> TrainSettings:
    """Training settings; a pretrained backbone is fine-tuned (advrp2k.backbones' protocol) and
    the identity of its weights is part of the settings, so another file is another model."""
    p = job.protocol
    init = weights_identity(p.arch, job.pretrained, job.model_dir)
    lr = p.lr * FINETUNE_LR_FACTOR if init else p.lr
    return TrainSettings(epochs=p.epochs, batch_size=p.batch_size, lr=lr, momentum=p.momentum,
                         weight_decay=p.weight_decay, lr_decay_every=p.lr_decay_every, seed=job.seed,
                         precision=resolve_precision(job.precision, device), augment=job.augment,
                         extra={"init": init} if init else {})


def _train_key(prep: Prepared, arch: str, defense_name: str, defense_cfg: dict, settings: TrainSettings) -> str:
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


def get_model(job: Job, prep: Prepared, device: torch.device) -> LoadedModel:
    """Load ``--checkpoint``, else the cached model of this exact config, else train one.

    Runs sharing a cache hold the model's lock: a second run of the same config waits for the
    first to finish training and then reuses its model, never trains it twice.
    """
    info, defense = _defense(job)
    if job.checkpoint is not None:
        ckpt = read_checkpoint(job.checkpoint)
        check_classes(ckpt.record, prep.scan.classes, job.checkpoint)
        model = _model_from_state(ckpt.record, ckpt.state, len(prep.scan.classes), job.checkpoint)
        return LoadedModel(_maybe_wrap(defense, model), Path(job.checkpoint), ckpt.record, ckpt.sha256, None, True)
    base_name, base = (defense.base_defense, create_defense(defense.base_defense)) \
        if isinstance(defense, TestTimeDefense) else (job.defense, defense)
    settings = _settings(job, device)
    key = _train_key(prep, job.protocol.arch, base_name, base.config(), settings)
    folder = cache_dir("models", key)
    path = folder / "model.safetensors"
    # Under torchrun the main process holds the lock and decides; every process trains together.
    with item_lock(folder, f"the model {base_name} (cache {folder})") if distributed.is_main() else nullcontext():
        trained = distributed.broadcast(_cached_model(path, prep) is None if distributed.is_main() else None)
        if trained:
            _train_and_save(job, prep, device, base_name, base, settings, folder)
        distributed.barrier()
        cached = _cached_model(path, prep)
    ckpt, model = cached
    side = _read_side_record(folder)
    return LoadedModel(_maybe_wrap(defense, model), path, ckpt.record, ckpt.sha256, side.get("train_wall_s"),
                       reused=not trained, train_threads=side.get("threads"))


def _cached_model(path: Path, prep: Prepared):
    """(checkpoint, model) from the model cache, or None when missing or unusable."""
    if not path.is_file():
        return None
    try:
        ckpt = read_checkpoint(path)
        return ckpt, _model_from_state(ckpt.record, ckpt.state, len(prep.scan.classes), path)
    except CheckpointError as exc:
        log.warning("retraining: cached model unusable (%s)", exc)
        return None


def _train_and_save(job: Job, prep: Prepared, device, base_name: str, base, settings: TrainSettings,
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
    train(prepare_model(model, settings.precision, device, job.compile), base, x, y, settings, folder / "run", device,
          progress=job.progress)
    wall = time.perf_counter() - t0
    record = {"arch": arch, "arch_id": arch_id(arch, job.pretrained) + ("-augpaper" if job.augment == "paper" else ""),
              "backbone": backbone,
              "classes": prep.scan.classes, "image_size": prep.image_size, "defense": base_name,
              "defense_config": base.config(), "train_settings": settings.to_dict(),
              "dataset": prep.source.name, "dataset_fingerprint": prep.scan.fingerprint,
              "advrp2k_version": _version.__version__}
    if distributed.is_main():
        save_model(folder / "model.safetensors", model, record)
        write_json(folder / "training.json", {"train_wall_s": wall, "device": str(device), "processes":
                                              distributed.world_size(), "threads": torch.get_num_threads(),
                                              "date": datetime.datetime.now().isoformat(timespec="seconds")})


def _read_side_record(folder: Path) -> dict:
    from ._io import read_json

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
                              f"classes ({str(exc).splitlines()[0]})")
    return model.eval()


def _maybe_wrap(defense, model):
    return defense.wrap(model).eval() if isinstance(defense, TestTimeDefense) else model


def default_eval_batch_size(device: torch.device) -> int:
    """Examples in flight per attack step: a GPU wants full batches; on a CPU, 128 measured fastest
    (smaller batches stay in cache; benchmarks/eval_speed.py)."""
    return 512 if device.type == "cuda" else 128


def default_attacks(protocol: Protocol) -> list[AttackSpec]:
    return [AttackSpec("pgd", {"steps": protocol.eval_steps, "restarts": protocol.eval_restarts})]


def check_job(job: Job) -> None:
    """Everything that can be refused is refused before any data work: the defense and its
    options, the attack suite and its options, and every output location."""
    _defense(job)
    attacks = job.attacks or default_attacks(job.protocol)
    names = [a.name for a in attacks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"attack {', '.join(twice)} is listed twice in the suite: list each attack once "
                         f"(set its options instead of repeating it)")
    for spec in attacks:
        spec.build(Eps(8 / 255, "8/255"))  # unknown attacks and bad options fail now
    if job.hand_fields:
        from .leaderboard import validate_hand_fields

        validate_hand_fields(job.hand_fields)
    check_output_dir(job.leaderboard, "--leaderboard")
    check_output_dir(cache_home(), "the cache folder (ADVRP2K_HOME)")
    if job.checkpoint is not None:
        read_checkpoint(job.checkpoint)  # an unreadable or unsafe checkpoint fails now too
    else:
        weights_identity(job.protocol.arch, job.pretrained, job.model_dir)  # so do missing or unsafe weights


def run_eval(job: Job) -> dict:
    """Train or load, evaluate, write the leaderboard entry; return it with its path."""
    device = resolve_device(job.device)
    check_job(job)
    prep = prepare(job)
    loaded = get_model(job, prep, device)
    attacks = job.attacks or default_attacks(job.protocol)
    eps_list = job.attack_eps or [Eps(4 / 255, "4/255"), Eps(8 / 255, "8/255")]
    if job.reuse_entry:
        reused = _matching_entry(job, prep, loaded, attacks, eps_list)
        if reused is not None:
            return reused
    x, y = load_split(prep.scan, "test", prep.image_size, progress=job.progress)
    if job.n_examples:
        x, y = x[:job.n_examples], y[:job.n_examples]
    state = _eval_state(job, prep, loaded, attacks, eps_list, len(y))
    state.context = _analysis_context(prep, y)
    with item_lock(state.path, f"the evaluation {state.path.name}") if distributed.is_main() else nullcontext():
        state.reload()  # a run that waited picks up what the other one saved
        precision = resolve_precision(job.precision, device)
        result = evaluate(prepare_model(loaded.model, precision, device, job.compile), x, y, attacks, eps_list, device,
                          job.batch_size_eval or default_eval_batch_size(device), job.progress,
                          num_classes=len(prep.scan.classes), state=state, per_attack=job.per_attack,
                          escalate=job.escalate, precision=precision)
        if not distributed.is_main():  # the main process writes the one entry
            return {"entry": None, "path": None, "result": result}
        entry = build_entry(job, prep, loaded, result, device)
        entry.update(entry_analyses(entry, frame(state.as_dict()), state.context["attributes"]))
        final = _examples_path(job, prep, entry["model_id"])
        # Entry and per-example file are published together; the lock lives in .partial/, out of sight.
        with item_lock(final.parent / ".partial" / final.name, f"the entry {entry['model_id']}"):
            state.publish(final)
            path = write_entry(job.leaderboard, entry)
    return {"entry": entry, "path": str(path), "result": result}


def _analysis_context(prep: Prepared, y: torch.Tensor) -> dict:
    """What the per-example analyses need beside the results: labels, class names, training
    counts per class and the attributes of the classes (saved with the per-example results)."""
    classes = prep.scan.classes
    counts = [0] * len(classes)
    for _, label in prep.scan.samples.get("train", []):
        counts[label] += 1
    attrs = {c: prep.scan.attributes[c] for c in classes if c in prep.scan.attributes}
    return {"labels": y.tolist(), "classes": classes, "train_counts": counts, "attributes": attrs}


def _identity(job: Job, record: dict):
    """(defense plugin info, defense, its training eps or None, model id) of this job's entry."""
    info, defense = _defense(job)
    eps = job.eps if getattr(info.obj, "needs_eps", True) else None
    return info, defense, eps, model_id(defense.paper_id, record.get("arch_id") or record["arch"].replace(":", "-"), eps)


def _examples_path(job: Job, prep: Prepared, mid: str) -> Path:
    return Path(job.leaderboard) / "examples" / prep.source.name / "linf" / f"{mid}.json"


def _eval_state(job, prep, loaded: LoadedModel, attacks, eps_list, n) -> EvalState:
    """Per-example results of this exact evaluation, keyed by what defines it.

    While running they live in ``<leaderboard>/examples/<dataset>/linf/.partial/<model_id>-<key>.json``
    (two runs of the same model and config share the file; runs of different ones never
    collide); when complete they are published as ``.../<model_id>.json`` beside the entry.
    """
    mid = _identity(job, loaded.record)[3]
    header = {"model_id": mid, "checkpoint_sha256": loaded.sha256, "data_fingerprint": prep.scan.fingerprint,
              "eps": [e.label for e in sorted(eps_list)], "n_examples": n, "per_attack": job.per_attack,
              "attacks": [{"name": a.name, "options": a.options} for a in attacks]}
    key = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:16]
    final = _examples_path(job, prep, mid)
    path = final.parent / ".partial" / f"{mid}-{key}.json"
    if job.restart and distributed.is_main():
        EvalState.discard(path)
    distributed.barrier()
    return EvalState(path, header, published=None if job.restart else final,
                     shard=(distributed.rank(), distributed.world_size()))


def _matching_entry(job, prep, loaded: LoadedModel, attacks, eps_list) -> dict | None:
    """The existing entry, if it was computed from this very checkpoint, data and attack suite."""
    from ._io import read_json
    from .leaderboard import entry_problems

    path = Path(job.leaderboard) / "entries" / prep.source.name / "linf" / f"{_identity(job, loaded.record)[3]}.json"
    if not path.is_file():
        return None
    try:
        entry = read_json(path)
    except ValueError:
        return None
    wanted = [a.build(e).config() for a in attacks for e in sorted(eps_list)]  # the engine's order
    # A stronger suite that contains this one (with standalone numbers per attack) serves too.
    covered = entry.get("attacks") == wanted or (
        all(c in entry.get("attacks", []) for c in wanted) and {a.name for a in attacks} <= set(entry.get("per_attack", {})))
    same = (not entry_problems(entry) and entry["reproducibility"].get("checkpoint_sha256") == loaded.sha256
            and entry["data"].get("fingerprint") == prep.scan.fingerprint and covered
            and (job.n_examples is None or entry["n_examples"] == job.n_examples))
    return {"entry": entry, "path": str(path), "result": None, "reused": True} if same else None


def model_id(paper_id: str, arch: str, eps: Eps | None) -> str:
    suffix = f"_eps{eps.label.replace('/', '-')}" if eps is not None else ""
    return f"{paper_id}_{arch}{suffix}"


def build_entry(job: Job, prep: Prepared, loaded: LoadedModel, result: EvalResult, device) -> dict:
    record = loaded.record
    info, defense, eps, mid = _identity(job, record)
    attack_plugins = [ATTACKS.info(a.name).provenance() for a in (job.attacks or default_attacks(job.protocol))]
    entry = {
        "schema_version": SCHEMA_VERSION,
        "model_id": mid,
        "dataset": prep.source.name, "synthetic": prep.source.synthetic, "threat_model": "linf",
        "data": {"description": prep.source.description, "fingerprint": prep.scan.fingerprint,
                 "n_classes": len(prep.scan.classes), "image_size": prep.image_size, "split": "test"},
        "defense": job.defense, "defense_config": defense.config(),
        "train_eps": eps.value if eps else None, "train_eps_label": eps.label if eps else None,
        "plugins": {"defense": info.provenance(), "attacks": attack_plugins},
        "arch": record["arch"], **({"backbone": record["backbone"]} if record.get("backbone") else {}),
        "clean_acc": result.clean_acc(), "top5_acc": result.top5_correct.float().mean().item(),
        "robust_acc": result.robust_acc(), "eps": {k: _eps_of(result, k) for k in result.robust},
        "attacks": result.attacks, "n_examples": result.n_examples,
        "per_group": result.per_group(prep.scan.classes, prep.scan.attributes),
        "flags": result.flags, "unreliable": bool(result.flags), "evaluation_protocol": result.protocol,
        "precision": {**result.precision, "compile": job.compile},
        **({"escalation": result.escalation} if result.escalation else {}),
        **({"per_attack": result.per_attack} if result.per_attack else {}),
        **({"autoattack_acc": result.per_attack["autoattack"]} if "autoattack" in result.per_attack else {}),
        "date": datetime.date.today().isoformat(),
        "reproducibility": _repro(job, loaded, result, device),
        **job.hand_fields,
    }
    return entry


def _eps_of(result: EvalResult, label: str) -> float:
    return next(a["eps"] for a in result.attacks if a["eps_label"] == label)


def _repro(job, loaded: LoadedModel, result, device) -> dict:
    import torchvision

    record = loaded.record
    return {"seed": job.seed, "protocol": job.protocol.to_dict(), "train_settings": record.get("train_settings"),
            "versions": {"advrp2k": _version.__version__, "torch": torch.__version__,
                         "torchvision": torchvision.__version__, "python": platform.python_version()},
            "device": str(device), "dataset_fingerprint": record.get("dataset_fingerprint"),
            "checkpoint_sha256": loaded.sha256, "processes": distributed.world_size(),
            "train_threads": loaded.train_threads,
            "random_streams": "per example: (attack seed, example index, restart)",
            "wall_s": {"train": loaded.train_wall, "train_reused_from_cache": loaded.reused, "eval": result.wall_s},
            "counts": result.counts}
