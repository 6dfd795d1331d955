"""Which torchattacks attacks advrp2k serves, and under which threat models: torch-free, so
``advrp2k list`` can read the ``ta:`` family from torchattacks' sources without importing it (the
adapter, ``torchattacks_adapter``, registers the same names from the imported classes; a test
checks that both agree).
"""
from __future__ import annotations

import ast
from importlib import metadata

from advrp2k import Listed, plugin_source

PREFIX = "ta:"
#: torchattacks attacks of the l2 threat model only.
L2_ONLY = {"PGDL2"}
#: torchattacks attacks served by no threat model here (no budget, another norm, or not a
#: per-batch attack), with why.
NOT_LINF = {"CW": "L2 without a budget (a minimal-distance attack)", "PGDRSL2": "L2 against a randomized-smoothing model",
            "DeepFool": "L2 without a budget (a minimal-distance attack)", "EADEN": "elastic-net (L1 + L2)",
            "EADL1": "L1", "JSMA": "L0", "OnePixel": "L0", "Pixle": "L0", "SparseFool": "L0",
            "GN": "none (Gaussian noise)", "VANILA": "none (no perturbation)",
            "LGV": "l_inf through surrogate models trained on a train loader (not a per-batch attack)",
            "MultiAttack": "a container of other attacks"}


def threats_of(name: str, init_params) -> tuple[str, ...]:
    """The threat models a torchattacks class serves: l2 only, both (its constructor takes a
    ``norm``), or l_inf."""
    if name in L2_ONLY:
        return ("l2",)
    return ("linf", "l2") if "norm" in init_params else ("linf",)


def listed() -> list[Listed]:
    """The ``ta:`` attacks, read from the installed torchattacks' package sources (none when it is
    not installed)."""
    init = plugin_source("torchattacks")
    if init is None:
        return []
    version = metadata.version("torchattacks")
    out = []
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            source = init.parent.joinpath(*node.module.split(".")).with_suffix(".py")
            classes = _classes(source)
            for alias in node.names:
                if alias.name in classes and alias.name not in NOT_LINF:
                    out.append(Listed("attacks", PREFIX + alias.name, threats_of(alias.name, classes[alias.name]),
                                      f"torchattacks {version}"))
    return out


def _classes(source) -> dict[str, list[str]]:
    """Each class defined in ``source`` -> the parameter names of its ``__init__``."""
    out = {}
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef):
            init = next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
            out[node.name] = [a.arg for a in init.args.args + init.args.kwonlyargs] if init else []
    return out
