"""End-to-end jobs the CLI calls: prepare data, train (or reuse) a model, evaluate, write the entry."""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import _version
from ._eps import Eps
from ._registry import ATTACKS, DEFENSES
from .checkpoints import check_classes, load_checkpoint, save_model, sha256_file
from .data import DataSource, load_split, prepare_data, scan_rp2k
from .data.rp2k import read_attributes
from .defense_base import TestTimeDefense, create_defense
from .errors import CheckpointError, DataError, UsageError
from .eval_state import EvalState
from .evaluator import AttackSpec, EvalResult, evaluate
from .leaderboard import SCHEMA_VERSION, write_entry
from .models import create_model, resolve_device
from .paths import cache_dir
from .protocols import Protocol
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


def _settings(job: Job) -> TrainSettings:
    p = job.protocol
    return TrainSettings(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, momentum=p.momentum,
                         weight_decay=p.weight_decay, lr_decay_every=p.lr_decay_every, seed=job.seed)


def _train_key(prep: Prepared, arch: str, defense_name: str, defense_cfg: dict, settings: TrainSettings) -> str:
    blob = json.dumps([TRAINER_VERSION, prep.scan.fingerprint, prep.scan.classes, prep.image_size, arch,
                       defense_name, defense_cfg, settings.to_dict()], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def get_model(job: Job, prep: Prepared, device: torch.device):
    """Load ``--checkpoint``, else the cached model of this exact config, else train one.

    Returns:
        (model in eval mode, checkpoint path, record, train wall seconds or None when reused).
    """
    info, defense = _defense(job)
    if job.checkpoint is not None:
        state, record = load_checkpoint(job.checkpoint)
        check_classes(record, prep.scan.classes, job.checkpoint)
        model = _model_from_state(record, state, len(prep.scan.classes), job.checkpoint)
        return _maybe_wrap(defense, model), Path(job.checkpoint), record, None
    base_name, base = (defense.base_defense, create_defense(defense.base_defense)) \
        if isinstance(defense, TestTimeDefense) else (job.defense, defense)
    arch, settings = job.protocol.arch, _settings(job)
    key = _train_key(prep, arch, base_name, base.config(), settings)
    folder = cache_dir("models", key)
    path = folder / "model.safetensors"
    if path.is_file():
        try:
            state, record = load_checkpoint(path)
            model = _model_from_state(record, state, len(prep.scan.classes), path)
            return _maybe_wrap(defense, model), path, record, None
        except CheckpointError as exc:
            log.warning("retraining: cached model unusable (%s)", exc)
    torch.manual_seed(job.seed)
    model = create_model(arch, len(prep.scan.classes))
    x, y = load_split(prep.scan, "train", prep.image_size, progress=job.progress)
    if not len(y):
        raise DataError(f"no usable training images under {prep.source.root}/all/train")
    t0 = time.perf_counter()
    train(model, base, x, y, settings, folder / "run", device, progress=job.progress)
    wall = time.perf_counter() - t0
    record = {"arch": arch, "classes": prep.scan.classes, "image_size": prep.image_size, "defense": base_name,
              "defense_config": base.config(), "train_settings": settings.to_dict(), "train_wall_s": wall,
              "dataset": prep.source.name, "dataset_fingerprint": prep.scan.fingerprint,
              "advrp2k_version": _version.__version__, "device": str(device)}
    save_model(path, model, record)
    return _maybe_wrap(defense, model), path, record, wall


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


def run_eval(job: Job) -> dict:
    """Train or load, evaluate, write the leaderboard entry; return it with its path."""
    device = resolve_device(job.device)
    _defense(job)  # unknown names and bad options fail before any data work
    if job.checkpoint is not None:
        load_checkpoint(job.checkpoint)  # so does an unreadable or unsafe checkpoint
    prep = prepare(job)
    model, ckpt, record, train_wall = get_model(job, prep, device)
    attacks = job.attacks or default_attacks(job.protocol)
    eps_list = job.attack_eps or [Eps(4 / 255, "4/255"), Eps(8 / 255, "8/255")]
    if job.reuse_entry:
        reused = _matching_entry(job, prep, ckpt, attacks, eps_list, record)
        if reused is not None:
            return reused
    x, y = load_split(prep.scan, "test", prep.image_size, progress=job.progress)
    if job.n_examples:
        x, y = x[:job.n_examples], y[:job.n_examples]
    state = _eval_state(job, prep, record, ckpt, attacks, eps_list, len(y))
    result = evaluate(model, x, y, attacks, eps_list, device, job.batch_size_eval or default_eval_batch_size(device),
                      job.progress,
                      num_classes=len(prep.scan.classes), state=state, per_attack=job.per_attack)
    entry = build_entry(job, prep, record, ckpt, result, device, train_wall)
    path = write_entry(job.leaderboard, entry)
    return {"entry": entry, "path": str(path), "result": result}


def _identity(job: Job, record: dict):
    """(defense plugin info, defense, its training eps or None, model id) of this job's entry."""
    info, defense = _defense(job)
    eps = job.eps if getattr(info.obj, "needs_eps", True) else None
    return info, defense, eps, model_id(defense.paper_id, record["arch"], eps)


def _eval_state(job, prep, record, ckpt, attacks, eps_list, n) -> EvalState:
    """Per-example results beside the entry: ``<leaderboard>/examples/<dataset>/linf/<model_id>.json``."""
    mid = _identity(job, record)[3]
    path = Path(job.leaderboard) / "examples" / prep.source.name / "linf" / f"{mid}.json"
    if job.restart:
        path.unlink(missing_ok=True)
    header = {"model_id": mid, "checkpoint_sha256": sha256_file(ckpt), "data_fingerprint": prep.scan.fingerprint,
              "eps": [e.label for e in sorted(eps_list)], "n_examples": n, "per_attack": job.per_attack,
              "attacks": [{"name": a.name, "options": a.options} for a in attacks]}
    return EvalState(path, header)


def _matching_entry(job, prep, ckpt, attacks, eps_list, record) -> dict | None:
    """The existing entry, if it was computed from this very checkpoint, data and attack suite."""
    from ._io import read_json
    from .leaderboard import entry_problems

    path = Path(job.leaderboard) / "entries" / prep.source.name / "linf" / f"{_identity(job, record)[3]}.json"
    if not path.is_file():
        return None
    try:
        entry = read_json(path)
    except ValueError:
        return None
    wanted = [a.build(e).config() for a in attacks for e in sorted(eps_list)]  # the engine's order
    same = (not entry_problems(entry) and entry["reproducibility"].get("checkpoint_sha256") == sha256_file(ckpt)
            and entry["data"].get("fingerprint") == prep.scan.fingerprint and entry["attacks"] == wanted
            and (job.n_examples is None or entry["n_examples"] == job.n_examples))
    return {"entry": entry, "path": str(path), "result": None, "reused": True} if same else None


def model_id(paper_id: str, arch: str, eps: Eps | None) -> str:
    suffix = f"_eps{eps.label.replace('/', '-')}" if eps is not None else ""
    return f"{paper_id}_{arch}{suffix}"


def build_entry(job: Job, prep: Prepared, record: dict, ckpt: Path, result: EvalResult, device, train_wall) -> dict:
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
        "arch": record["arch"], "clean_acc": result.clean_acc(), "top5_acc": result.top5_correct.float().mean().item(),
        "robust_acc": result.robust_acc(), "eps": {k: _eps_of(result, k) for k in result.robust},
        "attacks": result.attacks, "n_examples": result.n_examples,
        "per_group": result.per_group(prep.scan.classes, prep.scan.attributes),
        "flags": result.flags, "unreliable": bool(result.flags),
        **({"per_attack": result.per_attack} if result.per_attack else {}),
        **({"autoattack_acc": result.per_attack["autoattack"]} if "autoattack" in result.per_attack else {}),
        "date": datetime.date.today().isoformat(),
        "reproducibility": _repro(job, record, ckpt, result, device, train_wall),
    }
    return entry


def _eps_of(result: EvalResult, label: str) -> float:
    return next(a["eps"] for a in result.attacks if a["eps_label"] == label)


def _repro(job, record, ckpt, result, device, train_wall) -> dict:
    import torchvision

    return {"seed": job.seed, "protocol": job.protocol.to_dict(), "train_settings": record.get("train_settings"),
            "versions": {"advrp2k": _version.__version__, "torch": torch.__version__,
                         "torchvision": torchvision.__version__, "python": platform.python_version()},
            "device": str(device), "dataset_fingerprint": record.get("dataset_fingerprint"),
            "checkpoint_sha256": sha256_file(ckpt),
            "wall_s": {"train": train_wall if train_wall is not None else record.get("train_wall_s"),
                       "train_reused_from_cache": train_wall is None, "eval": result.wall_s},
            "counts": result.counts}
