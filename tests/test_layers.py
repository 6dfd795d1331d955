"""The package's layers: every import points down a layer, never up, and no import cycle exists.

Imports are read from the source (inside functions too, since an import moved into a function to
dodge a cycle is still an arrow), so the test sees what the code would do without running it.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Subpackage -> layer; a module may import its own subpackage and lower layers only. train and
#: eval share a layer and never import each other.
LAYERS = {"core": 0, "analysis": 1, "plugins": 2, "data": 3, "models": 4, "train": 5, "eval": 5,
          "board": 6, "jobs": 7, "cli": 8}
#: Modules directly under advrp2k/: the version is a foundation, the plugin test kit sits with the
#: jobs (it trains and evaluates), the Python entry point (benchmark) between the jobs it runs and
#: the CLI that shares it, the program's entry with the CLI.
TOP_LEVEL = {"advrp2k._version": 0, "advrp2k.testing": 7, "advrp2k.api": 7.5, "advrp2k.__main__": 8}
FACE = "advrp2k"  # the public API: lazy names over the layers, what plugins import
BUILTIN_PLUGIN_PACKAGES = ("attacks", "defenses")  # installed as advrp2k.attacks, advrp2k.defenses
TORCH_FREE = ("advrp2k.analysis.analyses", "advrp2k.analysis.results", "advrp2k.analysis.stats",
              "advrp2k.board.site", "advrp2k.board.export", "advrp2k.cli")


def module_files() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "advrp2k").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for pkg in BUILTIN_PLUGIN_PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            out["advrp2k." + pkg + ("" if path.stem == "__init__" else "." + path.stem)] = path
    return out


def imports_of(name: str, source: str, known: set[str], is_package: bool = False) -> set[str]:
    """The project modules ``source`` (module ``name``) imports, at any depth of its code."""
    package = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def layer_of(module: str) -> int | None:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def problems(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points up a layer, crosses between sibling layers, or (from a built-in
    plugin) goes past the public API; every cycle."""
    out = []
    for mod, targets in sorted(graph.items()):
        if mod.split(".")[1:2] and mod.split(".")[1] in BUILTIN_PLUGIN_PACKAGES:
            out += [f"{mod} -> {t}: a built-in plugin imports only the public advrp2k API"
                    for t in sorted(targets) if t != FACE and not t.startswith(mod.rsplit(".", 1)[0] + ".")]
            continue
        here = layer_of(mod)
        for t in sorted(targets):
            there = layer_of(t)
            if here is None or there is None or mod.split(".")[:2] == t.split(".")[:2]:
                continue
            siblings = there == here and mod not in TOP_LEVEL and t not in TOP_LEVEL
            if there > here or siblings:
                out.append(f"{mod} (layer {here}) -> {t} (layer {there}): an import up or across the layers")
    return out + [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (the package face, whose names are
    imported lazily by design, is left out)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w == FACE:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group) + [sorted(group)[0]])

    for v in sorted(graph):
        if v != FACE and v not in index:
            visit(v)
    return found


def project_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path.read_text(), set(files), path.name == "__init__.py")
            for name, path in files.items()}


def test_every_import_points_down_a_layer_and_no_cycle_exists():
    assert problems(project_graph()) == []


def test_every_module_has_a_layer():
    missing = [m for m in project_graph() if m != FACE and layer_of(m) is None
               and m.split(".")[1] not in BUILTIN_PLUGIN_PACKAGES]
    assert missing == []


def test_the_check_catches_an_upward_import_a_crossing_and_a_cycle():
    """The test of the test: the real graph with one bad arrow added each time."""
    graph = project_graph()
    upward = {**graph, "advrp2k.core.io": graph["advrp2k.core.io"] | {"advrp2k.jobs.run"}}
    assert any("advrp2k.core.io (layer 0) -> advrp2k.jobs.run" in p for p in problems(upward))
    across = {**graph, "advrp2k.train.trainer": graph["advrp2k.train.trainer"] | {"advrp2k.eval.engine"}}
    assert any("advrp2k.train.trainer (layer 5) -> advrp2k.eval.engine" in p for p in problems(across))
    plugin = {**graph, "advrp2k.attacks.pgd": graph["advrp2k.attacks.pgd"] | {"advrp2k.plugins.registry"}}
    assert any("a built-in plugin imports only the public advrp2k API" in p for p in problems(plugin))
    loop = {**graph, "advrp2k.data.listing": graph["advrp2k.data.listing"] | {"advrp2k.data.rp2k"}}
    assert any(p.startswith("import cycle:") and "advrp2k.data.listing" in p for p in problems(loop))


def test_imports_inside_functions_are_read_too():
    source = "def f():\n    from advrp2k.jobs import run\n"
    assert imports_of("advrp2k.core.io", source, {"advrp2k.jobs", "advrp2k.jobs.run"}) == {"advrp2k.jobs.run"}


@pytest.mark.parametrize("module", TORCH_FREE)
def test_light_layers_import_without_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "attacks"], ["leaderboard", "--help"],
                                  ["leaderboard", "validate", "LB"], ["leaderboard", "build", "LB"]])
def test_light_commands_run_without_importing_torch(tmp_path, args):
    """``advrp2k --help``, ``list`` and ``leaderboard validate``/``build`` never load torch (``list``
    reads the built-in plugins from their sources)."""
    (tmp_path / "LB" / "entries").mkdir(parents=True)
    code = ("import sys\nfrom advrp2k.cli import main\nsys.argv = ['advrp2k', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path)
    assert out.stderr.strip().splitlines()[-1] in ("NO-TORCH 0", "NO-TORCH None"), out.stderr
