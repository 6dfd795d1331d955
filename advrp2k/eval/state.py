"""Per-example evaluation results, saved after every attack batch so that an interrupted
evaluation resumes where it stopped. The file names the model, data, eps and attack configs
it belongs to; a resume with anything else is refused rather than mixed in.

A results file that cannot be trusted (unreadable, truncated, or valid JSON of the wrong
shape) is named in a warning, set aside as ``<name>.bad-<time>`` (never deleted: it may be
evidence) and the evaluation starts over.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from advrp2k.core.io import atomic_write, read_json, write_json
from advrp2k.core.errors import UsageError

log = logging.getLogger(__name__)
COUNT_KEYS = ("attack_forwards", "attack_backwards", "attacked_examples")


class EvalState:
    """``stages[key] = {"done": [...], "fooled": [...]}`` per (attack, eps) stage, plus clean results.

    Args:
        path: where the running evaluation saves itself (None: nothing is saved).
        header: what defines the evaluation; a saved file with another header is not resumed.
        published: the finished per-example file of the same evaluation, if one was published
            earlier: when ``path`` does not exist and it matches the header, it is resumed from.
    """

    def __init__(self, path: str | Path | None, header: dict, published: str | Path | None = None,
                 shard: tuple[int, int] = (0, 1)):
        self.path = Path(path) if path else None
        self.header = header
        self.published = Path(published) if published else None
        # Under torchrun each process saves its own progress beside the main file; a resume
        # merges every process's file, whatever the number of processes was then.
        self.rank, self.world = shard
        self.own_path = self.path.with_name(f"{self.path.stem}.rank{self.rank}-of-{self.world}.json") \
            if self.path and self.world > 1 else self.path
        # What the analyses need beside the results (labels, class names, training counts,
        # attributes); set by the caller, written with the results, never read back for resuming.
        self.context: dict = {}
        self.reload()

    def reload(self) -> None:
        """(Re)read the saved state: after waiting for another run, resume from what it saved."""
        self.clean_correct: list[bool] | None = None
        self.stages: dict[str, dict[str, list[int]]] = {}
        self.counts = {k: 0 for k in COUNT_KEYS}
        self.complete = False
        if self.path and self.path.is_file():
            self._load(self.path, strict=True)
        elif self.published and self.published.is_file():
            self._load(self.published, strict=False)
        for part in _rank_files(self.path):
            saved = EvalState(None, self.header)
            saved._load(part, strict=True)
            self.merge(saved.as_dict())
        # Every process of a resumed torchrun run reads every process's saved counts; only the
        # main process carries them on, the others save (and hand over) their new work alone,
        # so the whole evaluation's counts are added up once.
        self.resumed_counts = dict(self.counts)

    def _load(self, path: Path, strict: bool) -> None:
        try:
            data = read_json(path)
            problem = state_problem(data)
        except (ValueError, OSError) as exc:
            problem = f"unreadable ({type(exc).__name__})"
        if problem:
            set_aside(path, problem)
            return
        if data["header"] != self.header:
            if data["complete"] or not strict:
                return  # a finished evaluation of another config is simply replaced
            diff = sorted(k for k in set(data["header"]) | set(self.header)
                          if data["header"].get(k) != self.header.get(k))
            raise UsageError(f"an unfinished evaluation saved at {path} was for another {', '.join(diff)}: refusing to "
                             f"resume from it; delete the file (or pass --restart) to evaluate from scratch")
        self.clean_correct = data["clean_correct"]
        self.stages = {k: {"done": list(v["done"]), "fooled": list(v["fooled"]),
                           "adv_class": list(v.get("adv_class", [-1] * len(v["fooled"]))),
                           **({"targets": dict(v["targets"])} if "targets" in v else {})}
                       for k, v in data["stages"].items()}
        self.counts.update(data.get("counts") or {})
        self.complete = data["complete"]
        if self.complete:  # a finished evaluation is read whole (a repeated eval reports it as it is)
            self.context = data.get("context") or {}

    def stage(self, key: str) -> tuple[set[int], set[int]]:
        st = self.stages.get(key, {"done": [], "fooled": []})
        return set(st["done"]), set(st["fooled"])

    def record(self, key: str, done: list[int], fooled: list[int], adv_class: list[int] | None = None,
               targets: dict[int, list[int]] | None = None) -> None:
        """Save a finished batch: examples attacked, those fooled, the class each fooling point went
        to, and (a targeted attack's) the classes each example was aimed at (``targets``:
        ``{"<index>": [class, ...]}`` in the saved file)."""
        st = self.stages.setdefault(key, {"done": [], "fooled": [], "adv_class": []})
        st["done"] += done
        st["fooled"] += fooled
        st.setdefault("adv_class", [])
        st["adv_class"] += adv_class if adv_class is not None else [-1] * len(fooled)
        if targets:
            st.setdefault("targets", {}).update({str(i): list(t) for i, t in targets.items()})
        self.save()

    def merge(self, other: dict) -> None:
        """Union in another process's saved progress (disjoint examples; counts add up)."""
        if self.clean_correct is None:
            self.clean_correct = other["clean_correct"]
        for key, st in other["stages"].items():
            mine = self.stages.setdefault(key, {"done": [], "fooled": [], "adv_class": []})
            done = set(mine["done"])
            fooled = dict(zip(mine["fooled"], mine.get("adv_class") or [-1] * len(mine["fooled"])))
            fooled.update(zip(st["fooled"], st.get("adv_class") or [-1] * len(st["fooled"])))
            mine["done"] = sorted(done | set(st["done"]))
            mine["fooled"], mine["adv_class"] = list(fooled), list(fooled.values())
            if "targets" in st:
                mine.setdefault("targets", {}).update(st["targets"])
        for k, v in other.get("counts", {}).items():
            self.counts[k] = self.counts.get(k, 0) + v

    def finish(self, parts: list[dict]) -> None:
        """Merge every process's results (``parts``, in rank order) and, in the main process,
        save them as complete and remove the per-process files."""
        if self.world > 1:
            self.stages, self.counts = {}, {k: 0 for k in COUNT_KEYS}
            for part in parts:
                self.merge(part)
            self.resumed_counts = {}  # the merged counts are every process's own now
        if self.rank == 0:
            self.own_path = self.path
            self.save(complete=True)
            for f in _rank_files(self.path):
                f.unlink(missing_ok=True)
            for d in _points_dirs(self.path):
                shutil.rmtree(d, ignore_errors=True)

    def _points_dir(self) -> Path:
        return self.own_path.with_name(self.own_path.stem + ".points")

    def save_points(self, key: str, idx: list[int], points: torch.Tensor) -> None:
        """Keep survivors' adversarial points: the next eps starts from them, also after a resume."""
        if not self.path or not idx:
            return
        tag = _points_tag(key)
        n = len(list(self._points_dir().glob(f"{tag}-*.safetensors")))
        blob = save({"idx": torch.tensor(idx, dtype=torch.long), "x": points.contiguous()})
        atomic_write(self._points_dir() / f"{tag}-{n:06d}.safetensors", lambda f: f.write(blob))

    def load_points(self, key: str) -> dict[int, torch.Tensor]:
        """Saved survivors' points; an unreadable part is set aside (those examples start afresh)."""
        if not self.path:
            return {}
        tag = _points_tag(key)
        out = {}
        for f in sorted(f for d in _points_dirs(self.path) for f in d.glob(f"{tag}-*.safetensors")):
            try:
                part = load_file(str(f))
                out.update(zip(part["idx"].tolist(), part["x"]))
            except Exception as exc:  # safetensors raises several types for a damaged file
                set_aside(f, f"unreadable adversarial points ({type(exc).__name__})")
        return out

    def save(self, complete: bool = False) -> None:
        self.complete = complete
        if self.path and complete and self._points_dir().is_dir():
            shutil.rmtree(self._points_dir())  # only needed to resume an unfinished run
        if self.path:
            write_json(self.own_path, self.as_dict())

    def as_dict(self) -> dict:
        """The saved form (also what ``advrp2k.analysis.results.frame`` reads)."""
        return {"header": self.header, "clean_correct": self.clean_correct, "stages": self.stages,
                "counts": self.own_counts(), "complete": self.complete, "context": self.context}

    def own_counts(self) -> dict:
        """The counts this process saves: the main process's include the resumed run's, another
        process's only the work it did since (see ``reload``)."""
        if self.rank == 0:
            return dict(self.counts)
        return {k: v - self.resumed_counts.get(k, 0) for k, v in self.counts.items()}

    def publish(self, final: str | Path) -> None:
        """Move the finished results to ``final`` (beside the entry), atomically."""
        if self.path and self.path.is_file():
            Path(final).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, final)

    @staticmethod
    def discard(path: str | Path) -> None:
        """Forget a saved run (``--restart``): the file and its points."""
        path = Path(path)
        path.unlink(missing_ok=True)
        for f in _rank_files(path):
            f.unlink(missing_ok=True)
        for d in _points_dirs(path):
            shutil.rmtree(d, ignore_errors=True)


def _rank_files(path: Path | None) -> list[Path]:
    """The per-process progress files beside ``path`` (under torchrun)."""
    if not path or not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f"{path.stem}.rank*-of-*.json"))


def _points_dirs(path: Path | None) -> list[Path]:
    """The survivors' point folders beside ``path`` (one per process)."""
    if not path or not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f"{path.stem}*.points"))


def _points_tag(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def state_problem(data) -> str | None:
    """Why ``data`` is not a per-example results file, or None when its shape is right."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if not isinstance(data.get("header"), dict):
        return "no 'header' object"
    clean = data.get("clean_correct")
    if clean is not None and not (isinstance(clean, list) and all(isinstance(c, bool) for c in clean)):
        return "'clean_correct' is not a list of true/false"
    if not isinstance(data.get("complete"), bool):
        return "'complete' is not true/false"
    stages = data.get("stages")
    if not isinstance(stages, dict):
        return "no 'stages' object"
    n = len(clean) if isinstance(clean, list) else None
    for key, st in stages.items():
        if not isinstance(st, dict) or not {"done", "fooled"} <= set(st) <= {"done", "fooled", "adv_class", "targets"}:
            return f"stage {key[:40]!r} is not {{'done': [...], 'fooled': [...], 'adv_class': [...]}}"
        aimed = st.get("targets", {})
        if not isinstance(aimed, dict) or not all(
                isinstance(k, str) and k.isdigit() and _index_ok(int(k), n) and isinstance(t, list)
                and all(_index_ok(c, None) for c in t) for k, t in aimed.items()):
            return f"stage {key[:40]!r}: 'targets' is not {{example index: [class, ...]}}"
        for part in ("done", "fooled"):
            ids = st[part]
            if not isinstance(ids, list) or not all(_index_ok(i, n) for i in ids):
                return f"stage {key[:40]!r}: '{part}' is not a list of example indices"
        adv = st.get("adv_class", [-1] * len(st["fooled"]))
        if not isinstance(adv, list) or len(adv) != len(st["fooled"]) or not all(_index_ok(c + 1, None) for c in adv):
            return f"stage {key[:40]!r}: 'adv_class' is not one class (or -1) per fooled example"
    if not isinstance(data.get("context", {}), dict):
        return "'context' is not an object"
    counts = data.get("counts", {})
    if not isinstance(counts, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                               for v in counts.values()):
        return "'counts' is not an object of non-negative integers"
    return None


def _index_ok(i, n) -> bool:
    return isinstance(i, int) and not isinstance(i, bool) and i >= 0 and (n is None or i < n)


def set_aside(path: Path, why: str) -> Path:
    """Rename a file that cannot be trusted to ``<name>.bad-<time>``, with a warning naming both."""
    aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}")
    os.replace(path, aside)
    log.warning("per-example results %s cannot be used (%s): set aside as %s; starting that evaluation over",
                path, why, aside.name)
    return aside
