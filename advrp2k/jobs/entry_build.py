"""The entry a finished evaluation writes: its model id, its fields, and the record of what
reproduces it (versions, checkpoint, numeric identity, random streams, counts)."""
from __future__ import annotations

import datetime
import platform

import torch

from advrp2k import _version
from advrp2k.board.entries import SCHEMA_VERSION
from advrp2k.core import distributed
from advrp2k.core.eps import Eps
from advrp2k.core.machine import numeric_identity
from advrp2k.core.threat import threat_model
from advrp2k.data.tables import attributes_digest
from advrp2k.eval.evaluator import EvalResult
from advrp2k.jobs.goals import threat_goal
from advrp2k.jobs.job import Job, JobData
from advrp2k.jobs.model_store import LoadedModel, defense_for
from advrp2k.plugins.attack import ATTACK_BATCHNORM
from advrp2k.plugins.defense import AdversarialTraining
from advrp2k.plugins.registry import ATTACKS


def entry_identity(job: Job, record: dict):
    """(defense plugin info, defense, its training eps or None, model id) of this job's entry."""
    info, defense = defense_for(job)
    eps = job.eps if getattr(info.obj, "needs_eps", True) else None
    return info, defense, eps, model_id(defense.paper_id, record.get("arch_id") or record["arch"].replace(":", "-"), eps)


def _defense_paper(defense) -> dict:
    """The defense's readable title, with its paper's https link and venue when the plugin gives them."""
    link = getattr(defense, "link", None)
    return {"title": str(defense.title)[:200], **({"link": link} if isinstance(link, str) and link.startswith("https://") else {}),
            **({"venue": str(defense.venue)[:200]} if getattr(defense, "venue", None) else {})}


def model_id(paper_id: str, arch: str, eps: Eps | None) -> str:
    suffix = f"_eps{eps.label.replace('/', '-')}" if eps is not None else ""
    return f"{paper_id}_{arch}{suffix}"


def build_entry(job: Job, prep: JobData, loaded: LoadedModel, result: EvalResult, device) -> dict:
    record = loaded.record
    info, defense, eps, mid = entry_identity(job, record)
    attack_plugins = [ATTACKS.info(a.name).provenance() for a in job.suite()]
    entry = {
        "schema_version": SCHEMA_VERSION,
        "model_id": mid,
        "dataset": prep.source.name, "synthetic": prep.source.synthetic, "threat_model": job.threat,
        **({"threat": _threat_record(job, prep)} if job.threat != "linf" else {}),
        "data": {"description": prep.source.description, "fingerprint": prep.scan.fingerprint,
                 "n_classes": len(prep.scan.classes), "image_size": prep.image_size, "split": "test",
                 "n_test": len(prep.scan.samples["test"]),
                 "attributes_sha256": attributes_digest(prep.scan.attributes)},
        "defense": job.defense, "defense_config": defense.config(),
        **({"defense_paper": _defense_paper(defense)} if getattr(defense, "title", None) else {}),
        "train_eps": eps.value if eps else None, "train_eps_label": eps.label if eps else None,
        "plugins": {"defense": info.provenance(), "attacks": attack_plugins},
        "arch": record["arch"], **({"backbone": record["backbone"]} if record.get("backbone") else {}),
        **{k: record[k] for k in ("arch_library", "model_source") if record.get(k)},
        "clean_acc": result.clean_acc(), "top5_acc": result.top5_correct.float().mean().item(),
        "robust_acc": result.robust_acc(), "eps": {k: _eps_of(result, k) for k in result.robust},
        "attacks": result.attacks, "n_examples": result.n_examples,
        "per_group": result.per_group(prep.scan.classes, prep.scan.attributes),
        "flags": result.flags, "unreliable": bool(result.flags), "evaluation_protocol": result.protocol,
        "precision": {**result.precision, "compile": job.compile},
        **({"escalation": result.escalation} if result.escalation else {}),
        **({"convergence": result.convergence} if result.convergence else {}),
        **({"per_attack": result.per_attack} if result.per_attack else {}),
        **({"autoattack_acc": result.per_attack["autoattack"]} if "autoattack" in result.per_attack else {}),
        "date": datetime.date.today().isoformat(),
        "reproducibility": _repro(job, defense, loaded, result, device),
        **job.hand_fields,
    }
    return entry


def _threat_record(job: Job, prep: JobData) -> dict:
    """What the entry states of its threat model: the set, goal, references, which integrity
    checks apply, and for ticket switching how siblings were defined."""
    record = threat_model(job.threat).describe()
    goal = threat_goal(job, prep)
    return {**record, **({"siblings": goal.record()} if goal is not None else {})}


def random_streams(attacks) -> str:
    """How the suite's random draws were keyed, as the entry states it."""
    kinds: dict[str, list[str]] = {}
    for spec in attacks:
        kinds.setdefault(getattr(ATTACKS.get(spec.name), "random_streams", "per example"), []).append(spec.name)
    if set(kinds) <= {"per example"}:
        return "per example: (attack seed, example index, restart)"
    return "; ".join(f"{kind} for {', '.join(names)}" + (": (attack seed, example index, restart)"
                                                          if kind == "per example" else ": (attack seed, batch)")
                     for kind, names in kinds.items())


def _eps_of(result: EvalResult, label: str) -> float:
    return next(a["eps"] for a in result.attacks if a["eps_label"] == label)


def _repro(job, defense, loaded: LoadedModel, result, device) -> dict:
    import torchvision

    record = loaded.record
    return {"seed": job.seed, "protocol": job.protocol.to_dict(), "train_settings": record.get("train_settings"),
            "versions": {"advrp2k": _version.__version__, "torch": torch.__version__,
                         "torchvision": torchvision.__version__, "python": platform.python_version()},
            "device": str(device), "dataset_fingerprint": record.get("dataset_fingerprint"),
            "checkpoint_sha256": loaded.sha256, "processes": distributed.world_size(),
            "train_threads": loaded.train_threads,
            # what decides bit-for-bit reproducibility of the training (None: trained elsewhere or unrecorded)
            "train_numeric_identity": loaded.train_numeric,
            "eval_numeric_identity": numeric_identity(str(device)),
            **({"training_attacks_batchnorm": ATTACK_BATCHNORM}
               if isinstance(defense, AdversarialTraining) else {}),
            "random_streams": random_streams(job.suite()),
            "wall_s": {"train": loaded.train_wall, "train_reused_from_cache": loaded.reused, "eval": result.wall_s},
            "counts": result.counts}
