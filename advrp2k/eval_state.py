"""Per-example evaluation results, saved after every attack batch so that an interrupted
evaluation resumes where it stopped. The file names the model, data, eps and attack configs
it belongs to; a resume with anything else is refused rather than mixed in.
"""
from __future__ import annotations

from pathlib import Path

import hashlib

import torch
from safetensors.torch import load_file, save

from ._io import atomic_write, read_json, write_json
from .errors import UsageError


class EvalState:
    """``stages[key] = {"done": [...], "fooled": [...]}`` per (attack, eps) stage, plus clean results."""

    def __init__(self, path: str | Path | None, header: dict):
        self.path = Path(path) if path else None
        self.header = header
        self.clean_correct: list[bool] | None = None
        self.stages: dict[str, dict[str, list[int]]] = {}
        self.complete = False
        if self.path and self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            data = read_json(self.path)
        except ValueError:
            raise UsageError(f"per-example results {self.path} are unreadable: delete the file to start over")
        if data.get("header") != self.header:
            if data.get("complete"):
                return  # a finished evaluation of another config is simply replaced
            diff = sorted(k for k in set(data.get("header", {})) | set(self.header)
                          if data.get("header", {}).get(k) != self.header.get(k))
            raise UsageError(f"an unfinished evaluation saved at {self.path} was for another {', '.join(diff)}: refusing to "
                             f"resume from it; delete the file (or pass --restart) to evaluate from scratch")
        self.clean_correct = data.get("clean_correct")
        self.stages = {k: {"done": list(v["done"]), "fooled": list(v["fooled"])} for k, v in data["stages"].items()}
        self.complete = bool(data.get("complete"))

    def stage(self, key: str) -> tuple[set[int], set[int]]:
        st = self.stages.get(key, {"done": [], "fooled": []})
        return set(st["done"]), set(st["fooled"])

    def record(self, key: str, done: list[int], fooled: list[int]) -> None:
        st = self.stages.setdefault(key, {"done": [], "fooled": []})
        st["done"] += done
        st["fooled"] += fooled
        self.save()

    def _points_dir(self) -> Path:
        return self.path.with_name(self.path.stem + ".points")

    def save_points(self, key: str, idx: list[int], points: torch.Tensor) -> None:
        """Keep survivors' adversarial points: the next eps starts from them, also after a resume."""
        if not self.path or not idx:
            return
        tag = hashlib.sha256(key.encode()).hexdigest()[:12]
        n = len(list(self._points_dir().glob(f"{tag}-*.safetensors")))
        blob = save({"idx": torch.tensor(idx, dtype=torch.long), "x": points.contiguous()})
        atomic_write(self._points_dir() / f"{tag}-{n:06d}.safetensors", lambda f: f.write(blob))

    def load_points(self, key: str) -> dict[int, torch.Tensor]:
        if not self.path or not self._points_dir().is_dir():
            return {}
        tag = hashlib.sha256(key.encode()).hexdigest()[:12]
        out = {}
        for f in sorted(self._points_dir().glob(f"{tag}-*.safetensors")):
            part = load_file(str(f))
            out.update(zip(part["idx"].tolist(), part["x"]))
        return out

    def save(self, complete: bool = False) -> None:
        self.complete = complete
        if self.path and complete and self._points_dir().is_dir():
            import shutil

            shutil.rmtree(self._points_dir())  # only needed to resume an unfinished run
        if self.path:
            write_json(self.path, {"header": self.header, "clean_correct": self.clean_correct,
                                   "stages": self.stages, "complete": complete})
