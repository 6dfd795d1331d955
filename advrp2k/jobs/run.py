"""End-to-end jobs the CLI calls: locate the data, train (or reuse) a model, evaluate, write the entry."""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import nullcontext
from pathlib import Path

import torch

from advrp2k import _version
from advrp2k.core import distributed
from advrp2k.core.eps import Eps
from advrp2k.core.io import check_output_dir
from advrp2k.core.locks import item_lock
from advrp2k.analysis.analyses import entry_analyses
from advrp2k.models.backbones import weights_identity
from advrp2k.models.checkpoints import read_checkpoint
from advrp2k.data import load_split
from advrp2k.data.tables import attributes_digest
from advrp2k.core.errors import IntegrityError, UsageError
from advrp2k.eval.state import EvalState
from advrp2k.eval.evaluator import EVALUATION_VERSION, AttackSpec, evaluate
from advrp2k.eval.checks import fail_if, fail_if_nonfinite_weights
from advrp2k.jobs.job import Job, JobData, checkpoint_settings, default_attacks, load_job_data
from advrp2k.board.entries import entry_file, write_entry
from advrp2k.jobs.model_store import LoadedModel, defense_for, get_model
from advrp2k.jobs.entry_build import build_entry, entry_identity, model_id
from advrp2k.jobs.goals import data_siblings, threat_goal
from advrp2k.models.factory import check_arch, resolve_device
from advrp2k.core.paths import cache_home
from advrp2k.core.ranking_rule import RANKING_EPS, ranking_suite_of
from advrp2k.core.threat import threat_model
from advrp2k.core.precision import place_model, resolve_precision
from advrp2k.analysis.results import examples_path, frame

log = logging.getLogger(__name__)
__all__ = ["Job", "JobData", "load_job_data", "LoadedModel", "get_model", "run_eval", "check_job", "build_entry",
           "default_attacks", "default_eval_batch_size", "model_id"]


def default_eval_batch_size(device: torch.device) -> int:
    """Examples in flight per attack step: a GPU wants full batches; on a CPU, 128 measured fastest
    (smaller batches stay in cache; benchmarks/eval_speed.py)."""
    return 512 if device.type == "cuda" else 128


def ranking_suite(threat: str = "linf") -> list[AttackSpec]:
    """The fixed suite every ranked entry of ``threat`` was evaluated with (``advrp2k submit`` runs exactly this)."""
    return [AttackSpec(name, dict(options), threat) for name, options in ranking_suite_of(threat)]


def job_budgets(job: Job, image_size: int | None = None) -> list[Eps]:
    """The budgets a job evaluates: the ones asked for, else its threat model's defaults
    (l_inf: the ranking eps; l2's depend on the image size)."""
    if job.attack_eps:
        return list(job.attack_eps)
    if job.threat == "linf":
        return list(RANKING_EPS)
    return threat_model(job.threat).default_budgets(image_size or job.protocol.image_size)


def check_job(job: Job) -> None:
    """Everything that can be refused is refused before any data work: the defense and its
    options, the attack suite and its options, and every output location."""
    defense_for(job)
    attacks = job.suite()
    names = [a.name for a in attacks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"attack {', '.join(twice)} is listed twice in the suite: list each attack once "
                         f"(set its options instead of repeating it)")
    largest = job_budgets(job)[-1]
    for spec in attacks:
        spec.build_for_evaluation(largest)  # unknown attacks, other threat models, bad or unhonoured options fail now
    if job.hand_fields:
        from advrp2k.board.entries import validate_hand_fields

        validate_hand_fields(job.hand_fields)
    check_output_dir(job.leaderboard, "--leaderboard")
    check_output_dir(cache_home(), "the cache folder (ADVRP2K_HOME)")
    if job.checkpoint is not None:  # an unreadable, unsafe, contradicted or non-finite checkpoint fails now too
        ckpt = read_checkpoint(job.checkpoint)
        checkpoint_settings(job, ckpt.record)
        fail_if_nonfinite_weights(ckpt.state, f"checkpoint {job.checkpoint}")
    else:
        check_arch(job.protocol.arch)  # an unknown arch fails before any data is written
        weights_identity(job.protocol.arch, job.pretrained, job.model_dir)  # so do missing or unsafe weights


def run_eval(job: Job) -> dict:
    """Train or load, evaluate, write the leaderboard entry; return it with its path."""
    device = resolve_device(job.device)
    check_job(job)
    prep = load_job_data(job)
    loaded = get_model(job, prep, device)
    attacks = [a.reseeded(job.seed) for a in job.suite()]  # --seed reaches them
    eps_list = job_budgets(job, prep.image_size)
    if job.reuse_entry:
        reused = _matching_entry(job, prep, loaded, attacks, eps_list)
        if reused is not None:
            return reused
    n_test = len(prep.scan.samples["test"])
    n = min(job.n_examples or n_test, n_test)
    precision = resolve_precision(job.precision, device)
    state = _eval_state(job, prep, loaded, attacks, eps_list, n, precision)
    stored = _stored_result(job, prep, loaded, state)
    if stored is not None:
        return stored
    if not job.force:
        refuse_weaker_replacement(_entry_path(job, prep, entry_identity(job, loaded.record)[3]), attacks, eps_list, n)
    x, y = load_split(prep.scan, "test", prep.image_size, progress=job.progress)
    x, y = x[:n], y[:n]
    state.context = _analysis_context(prep, y)
    with item_lock(state.path, f"the evaluation {state.path.name}") if distributed.is_main() else nullcontext():
        state.reload()  # a run that waited picks up what the other one saved
        placed = place_model(loaded.model, precision, device, job.compile)
        batch = job.batch_size_eval or default_eval_batch_size(device)
        result = evaluate(placed, x, y, attacks, eps_list, device, batch, job.progress,
                          num_classes=len(prep.scan.classes), state=state, per_attack=job.per_attack,
                          escalate=job.escalate, precision=precision, seed=job.seed, threat=job.threat,
                          goal=threat_goal(job, prep), siblings=data_siblings(prep))
        if not distributed.is_main():  # the main process writes the one entry
            return {"entry": None, "path": None, "result": result}
        entry = build_entry(job, prep, loaded, result, device)
        entry.update(_shelf_average_case(job, placed, x, y, eps_list, device, batch, entry))
        table = frame(state.as_dict())
        _check_entry_matches(entry, table)
        entry.update(entry_analyses(entry, table, state.context["attributes"]))
        final = _examples_path(job, prep, entry["model_id"])
        # Entry and per-example file are published together; the lock lives in .partial/, out of sight.
        with item_lock(final.parent / ".partial" / final.name, f"the entry {entry['model_id']}"):
            state.publish(final)
            path = write_entry(job.leaderboard, entry)
    return {"entry": entry, "path": str(path), "result": result}


def _shelf_average_case(job: Job, model, x, y, eps_list, device, batch: int, entry: dict) -> dict:
    """Under shelf conditions, the accuracy under each corruption at each severity (the average
    case, ``advrp2k.eval.corruption``), checked to lie at or above the worst case; {} otherwise."""
    if threat_model(job.threat).geometry != "shelf":
        return {}
    from advrp2k.eval.corruption import check_worst_below_mean, corruption_accuracy

    record = corruption_accuracy(model, x, y, [int(e.value) for e in eps_list], device, batch, job.progress)
    check_worst_below_mean(entry["robust_acc"], record)
    return {"shelf": record}


def _stored_result(job: Job, prep: JobData, loaded: LoadedModel, state: EvalState) -> dict | None:
    """The published entry, when this very evaluation finished before: its per-example results
    carry this run's key (model, data, eps, examples, attack configs, precision, escalation,
    seed, versions) and the entry beside them records the same checkpoint and agrees with them.
    Nothing is attacked or classified again; a repeated ``eval`` prints it in seconds."""
    from advrp2k.core.io import read_json
    from advrp2k.board.entries import entry_problems

    path = _entry_path(job, prep, entry_identity(job, loaded.record)[3])
    if job.restart or not state.complete or not path.is_file():
        return None
    try:
        entry = read_json(path)
        same = not entry_problems(entry) and entry["reproducibility"].get("checkpoint_sha256") == loaded.sha256
        if same:
            _check_entry_matches(entry, frame(state.as_dict()))
    except (ValueError, IntegrityError, UsageError, KeyError):
        return None  # anything that does not match exactly is evaluated again
    return {"entry": entry, "path": str(path), "result": None, "reused": True} if same else None


def refuse_weaker_replacement(path: Path, attacks, eps_list, n: int) -> None:
    """Before any attack work: refuse to replace the entry at ``path`` with one that would lose
    something it has (an attack of its suite, an eps, test images), unless ``--force``.

    Raises:
        UsageError: saying what would be lost and how to keep both.
    """
    from advrp2k.core.io import read_json

    if not path.is_file():
        return
    try:
        old = read_json(path)
    except ValueError:
        return  # an unreadable entry is replaced (load_entries reports it meanwhile)
    old_attacks = [a.get("name") for a in old.get("plugins", {}).get("attacks", [])]
    lost = [f"attack {a}" for a in old_attacks if a not in {s.name for s in attacks}]
    lost += [f"eps {e}" for e in old.get("robust_acc", {}) if e not in {x.label for x in eps_list}]
    if old.get("n_examples", 0) > n:
        lost.append(f"{old['n_examples'] - n} of its {old['n_examples']} test images")
    if lost:
        raise UsageError(f"{path} holds an entry from a stronger evaluation ({' + '.join(old_attacks)} on "
                         f"{old.get('n_examples')} images); this one would replace it and lose {', '.join(lost)}. "
                         f"Pass --force to replace it, or --leaderboard DIR to write this one elsewhere")


def _check_entry_matches(entry: dict, table) -> None:
    """FAIL unless the entry's accuracies are those of the per-example results published with it."""
    from advrp2k.analysis.results import ROBUST

    pairs = [("clean", entry["clean_acc"], table["clean_correct"].mean())]
    # No column for an eps: no example was left to attack there (stages are recorded per batch), so none is robust.
    pairs += [(label, acc, table[ROBUST + label].mean() if ROBUST + label in table else 0.0)
              for label, acc in entry["robust_acc"].items()]
    for label, claimed, recorded in pairs:
        fail_if(abs(claimed - recorded) > 1e-6, "entry matches its per-example results",
                f"accuracy at {label} is {claimed:.4%} in the entry but {recorded:.4%} in its per-example results")


def _analysis_context(prep: JobData, y: torch.Tensor) -> dict:
    """What the per-example analyses need beside the results: labels, class names, training
    counts per class and the attributes of the classes (saved with the per-example results)."""
    classes = prep.scan.classes
    counts = [0] * len(classes)
    for _, label in prep.scan.samples.get("train", []):
        counts[label] += 1
    attrs = {c: prep.scan.attributes[c] for c in classes if c in prep.scan.attributes}
    return {"labels": y.tolist(), "classes": classes, "train_counts": counts, "attributes": attrs}


def _entry_path(job: Job, prep: JobData, mid: str) -> Path:
    return entry_file(job.leaderboard, prep.source.name, job.threat, mid)


def _examples_path(job: Job, prep: JobData, mid: str) -> Path:
    return examples_path(_entry_path(job, prep, mid))


def _eval_state(job, prep, loaded: LoadedModel, attacks, eps_list, n, precision: str) -> EvalState:
    """Per-example results of this exact evaluation, keyed by everything that changes a result:
    model, data, eps, examples, attacks and their options (seed included), attack precision,
    compile, escalation, and the versions of advrp2k and the attack libraries. A saved or
    published file of any other evaluation is never reported as this one's.

    While running they live in ``<leaderboard>/examples/<dataset>/<threat>/.partial/<model_id>-<key>.json``
    (two runs of the same model and config share the file; runs of different ones never
    collide); when complete they are published as ``.../<model_id>.json`` beside the entry.
    """
    mid = entry_identity(job, loaded.record)[3]
    header = {"model_id": mid, "checkpoint_sha256": loaded.sha256, "data_fingerprint": prep.scan.fingerprint,
              "eps": [e.label for e in sorted(eps_list)], "n_examples": n, "per_attack": job.per_attack,
              "attacks": [{"name": a.name, "options": a.options} for a in attacks],
              "configs": [a.build(e).config() for a in attacks for e in sorted(eps_list)],
              "precision": precision, "compile": job.compile, "escalate": job.escalate, "seed": job.seed,
              "versions": attack_library_versions(), "evaluation_version": EVALUATION_VERSION,
              # l_inf keys stay as they were, so the published per-example results still match
              **({"threat_model": job.threat} if job.threat != "linf" else {})}
    key = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:16]
    final = _examples_path(job, prep, mid)
    path = final.parent / ".partial" / f"{mid}-{key}.json"
    if job.restart and distributed.is_main():
        EvalState.discard(path)
    distributed.barrier()
    return EvalState(path, header, published=None if job.restart else final,
                     shard=(distributed.rank(), distributed.world_size()))


def attack_library_versions() -> dict:
    """Versions of advrp2k and of the libraries whose attacks it runs (None: not installed)."""
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None
    autoattack = version("autoattack") or version("pyautoattack")
    return {"advrp2k": _version.__version__, "torchattacks": version("torchattacks"), "autoattack": autoattack}


def _matching_entry(job, prep, loaded: LoadedModel, attacks, eps_list) -> dict | None:
    """The existing entry, if it was computed from this very checkpoint, data and attack suite."""
    from advrp2k.core.io import read_json
    from advrp2k.board.entries import entry_problems

    path = _entry_path(job, prep, entry_identity(job, loaded.record)[3])
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
    # Per-group results depend on the attribute table (entries written before its digest was kept lack it).
    attributes = attributes_digest(prep.scan.attributes)
    n_test = len(prep.scan.samples["test"])
    same = (not entry_problems(entry) and entry["reproducibility"].get("checkpoint_sha256") == loaded.sha256
            and entry["data"].get("fingerprint") == prep.scan.fingerprint and covered
            and entry["data"].get("attributes_sha256", attributes) == attributes
            and entry["n_examples"] == min(job.n_examples or n_test, n_test))  # a subset never stands for the whole
    return {"entry": entry, "path": str(path), "result": None, "reused": True} if same else None


