"""How the site shows an entry's values: budgets as k/255, rounded numbers, readable names, and
the command that reproduces an entry. Dicts in, strings out (no plugin or torch import)."""
from __future__ import annotations

import shlex

#: Options an attack's card leaves out: its budget (shown as the row's eps) and the name.
_HIDDEN = {"eps", "eps_label", "name"}


def param(value, key: str = "") -> str:
    """A parameter as a reader writes it: budgets and step sizes in 255ths (``8/255``, ``6.67/255``),
    4 significant digits for other floats, ``true``/``false``, lists joined, nested configs
    without their budget."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if key in _PIXEL_KEYS and 0 < value < 1:
            return f"{value * 255:.3g}/255"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "+".join(param(v) for v in value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={param(v, k)}" for k, v in value.items() if k not in _HIDDEN) + "}"
    return "none" if value is None else str(value)


#: Options measured in pixel units, shown in 255ths.
_PIXEL_KEYS = {"eps", "step_size", "alpha"}


def params(config: dict) -> list[tuple[str, str]]:
    """An attack's or defense's recorded config as (option, shown value) pairs."""
    return [(k, param(v, k)) for k, v in config.items() if k not in _HIDDEN]


def display_name(entry: dict) -> str:
    """The submitted name, else the defense plugin's readable title, else the model id."""
    return entry.get("name") or (entry.get("defense_paper") or {}).get("title") or entry["model_id"]


def paper_link(entry: dict) -> str | None:
    """The submitted link, else the defense plugin's paper link (https only)."""
    link = entry.get("link") or (entry.get("defense_paper") or {}).get("link")
    return link if isinstance(link, str) and link.startswith("https://") else None


def venue(entry: dict) -> str | None:
    return entry.get("venue") or (entry.get("defense_paper") or {}).get("venue")


def _default_suite(threat: str) -> list[str]:
    from advrp2k.core.threat import THREAT_MODELS

    model = THREAT_MODELS.get(threat)
    return sorted(model.default_attacks) if model else ["pgd"]


def reproduce_command(entry: dict) -> str:
    """The ``advrp2k eval`` command that reproduces this entry from the same data."""
    repro = entry.get("reproducibility") or {}
    settings, protocol = repro.get("train_settings") or {}, repro.get("protocol") or {}
    words = ["advrp2k", "eval", "--defense", entry.get("defense", "standard")]
    if entry.get("train_eps_label"):
        words += ["--eps", entry["train_eps_label"]]
    if protocol.get("name") and protocol["name"] != "quick":
        words += ["--protocol", protocol["name"]]
    if entry.get("arch") and protocol.get("arch") and entry["arch"] != protocol["arch"]:
        words += ["--arch", entry["arch"]]
    if settings.get("augment") not in (None, "none"):
        words += ["--augment", settings["augment"]]
    threat = entry.get("threat_model", "linf")
    if threat != "linf":
        words += ["--threat", threat]
    suite = sorted({a.get("name") for a in (entry.get("plugins") or {}).get("attacks", []) if a.get("name")})
    if suite and suite != _default_suite(threat):
        words += ["--attacks", ",".join(suite)]
    if entry.get("data", {}).get("n_test") and entry.get("n_examples", 0) < entry["data"]["n_test"]:
        words += ["--n-examples", str(entry["n_examples"])]
    if repro.get("seed"):
        words += ["--seed", str(repro["seed"])]
    if not entry.get("synthetic", True):
        words += ["--data", "/path/to/rp2k"]
    threads = repro.get("train_threads")
    prefix = f"OMP_NUM_THREADS={threads} " if threads and repro.get("device", "cpu") == "cpu" else ""
    return prefix + " ".join(shlex.quote(w) for w in words)
