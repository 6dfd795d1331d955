"""Model checkpoints: weights plus the class list and training config, never unpickled code.

Our own checkpoints are safetensors files whose metadata holds a JSON record. A stranger's
``.pt``/``.pth`` file is read only with ``torch.load(..., weights_only=True)`` passed
explicitly, which torch honours even when TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from advrp2k.core.io import atomic_write
from advrp2k.core.errors import CheckpointError

META_KEY = "advrp2k"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(path: str | Path, model: nn.Module, record: dict) -> Path:
    """Atomically write ``model``'s weights and ``record`` (arch, classes, config) as safetensors.

    The file's identity is its content: ``record`` must hold only what defines the model (no
    wall times, hosts or dates; those belong beside the file), and it is serialised with
    sorted keys, so two identical trainings write byte-identical files with the same SHA-256.
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = st_save(tensors, metadata={META_KEY: json.dumps(record, ensure_ascii=False, sort_keys=True)})
    return atomic_write(path, lambda f: f.write(blob))


@dataclass
class Checkpoint:
    """A checkpoint as read: weights, record, and the SHA-256 of the very bytes they came from."""

    state: dict[str, torch.Tensor]
    record: dict
    sha256: str


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read weights and record without running any code from the file.

    Returns:
        (state_dict on CPU, record). The record has at least ``arch`` and ``classes``.

    Raises:
        CheckpointError: unreadable, a pickle that needs code, or no class list.
    """
    ckpt = read_checkpoint(path)
    return ckpt.state, ckpt.record


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Like ``load_checkpoint``, also hashing the bytes read (not the file as it may be later)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass a file written by 'advrp2k train'")
    data = path.read_bytes()
    if path.suffix == ".safetensors" or data[8:9] == b"{":
        state, record = load_safetensors(path, data)
    else:
        state, record = _load_torch_weights_only(path, data)
    if not isinstance(record, dict) or not isinstance(record.get("classes"), list) or "arch" not in record:
        raise CheckpointError(
            f"checkpoint {path} carries no class list or arch: advrp2k needs both to check the class "
            f"mapping; save it with advrp2k.models.checkpoints.save_model or as {{'state_dict', 'classes', 'arch'}}")
    return Checkpoint(state, record, hashlib.sha256(data).hexdigest())


def load_safetensors(path: Path, data: bytes) -> tuple[dict, dict]:
    """(state dict, advrp2k record or {}) of safetensors ``data`` read from ``path``."""
    try:
        state = st_load(data)
        header_len = int.from_bytes(data[:8], "little")  # the metadata of these very bytes
        meta = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
        record = json.loads(meta.get(META_KEY, "{}"))
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({exc}); "
                              f"it may be truncated: retrain or re-download it")
    return state, record


def _torch_load_safely(path: Path, data: bytes, what: str, advice: str = ""):
    """``torch.load(weights_only=True)`` passed explicitly (an env var cannot switch it off); a
    pickle that would run code is refused, naming what it would call, and nothing in it runs."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError):
        names = _pickle_globals(path)
        reason = (f"loading it would import and call {', '.join(names[:3])}" if names else
                  "it is not a readable torch weights file (corrupt, truncated, or another format)")
        raise CheckpointError(f"refused {what} {path}: {reason}; nothing in it was run{advice}")


def _load_torch_weights_only(path: Path, data: bytes):
    obj = _torch_load_safely(path, data, "checkpoint",
                             ". Save the model's state_dict with its class list, or use safetensors")
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} holds no 'state_dict' dict: save "
                              f"{{'state_dict': model.state_dict(), 'classes': [...], 'arch': NAME}}")
    record = {k: v for k, v in obj.items() if k != "state_dict"}
    return obj["state_dict"], record


def read_weights(path: str | Path, data: bytes | None = None) -> tuple[dict, str]:
    """A weights file from elsewhere (a state dict, or ``{"state_dict": ...}``), read with
    ``torch.load(weights_only=True)``: a pickle that would run code is refused unrun.

    Args:
        data: the file's bytes when the caller has read them already.

    Returns:
        (state dict, SHA-256 of the file's bytes).
    """
    path = Path(path)
    data = path.read_bytes() if data is None else data
    obj = _torch_load_safely(path, data, "weights")
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"weights file {path} holds no state dict of tensors")
    return state, hashlib.sha256(data).hexdigest()


def _pickle_globals(path: Path) -> list[str]:
    """Callables a pickle references, found by parsing opcodes (pickletools never executes them)."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
        else:
            data = path.read_bytes()
        found, strings = [], []
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(arg)
            elif op.name == "GLOBAL":
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:
        return []
    return [n for n in dict.fromkeys(found) if not n.startswith(("torch.", "collections.OrderedDict"))]


def check_classes(record: dict, classes: list[str], path: str | Path) -> None:
    """FAIL if the checkpoint was trained on another class list than the data's."""
    theirs = record.get("classes")
    if theirs == classes:
        return
    if theirs is None:
        raise CheckpointError(f"checkpoint {path} carries no class list")
    missing = sorted(set(classes) - set(theirs))[:3]
    extra = sorted(set(theirs) - set(classes))[:3]
    detail = f"{len(theirs)} classes in the checkpoint vs {len(classes)} in the data"
    if missing or extra:
        detail += f"; only in the data: {missing}; only in the checkpoint: {extra}"
    else:
        detail += "; same names in another order"
    raise CheckpointError(f"checkpoint {path} was trained on another class list ({detail}): "
                          f"evaluate it on the data it was trained on, or retrain")


def key_mismatch(expected: dict, given: dict) -> str:
    """What differs between the arch's keys and the checkpoint's, said so a user can fix it: a
    plain torchvision network lacks the ``Normalize`` layer advrp2k puts first (its keys start
    ``0.`` for that layer and ``1.`` for the network)."""
    missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing and all(f"1.{k}" in expected for k in given if not k.startswith("0.")):
        return ("its keys are a bare network's (e.g. 'conv1.weight'), while advrp2k's built-in arch wraps the "
                "network as Sequential(Normalize(), network) (keys '0.mean', '1.conv1.weight'): save "
                "torch.nn.Sequential(advrp2k.models.architectures.Normalize(), net).state_dict(), or register "
                "your own arch with @register_arch and load it with -p MODULE")
    shapes = [k for k in set(expected) & set(given) if tuple(expected[k].shape) != tuple(given[k].shape)]
    parts = ([f"{len(missing)} keys missing (e.g. {missing[0]!r})"] if missing else []) + \
        ([f"{len(extra)} unexpected (e.g. {extra[0]!r})"] if extra else []) + \
        ([f"{len(shapes)} of another shape (e.g. {sorted(shapes)[0]!r}: a different number of classes?)"] if shapes else [])
    return "; ".join(parts)
