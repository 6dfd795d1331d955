"""Third-party plugin discovery, the autoload switch, -p, broken plugins, contract checks."""
import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest
from click.testing import CliRunner

from advrp2k.plugins import registry as _registry
from advrp2k.cli import cli
from advrp2k.cli.params import parse_key_values
from advrp2k.testing import check_defense

PLUGIN = textwrap.dedent('''
    import torch.nn.functional as F
    from advrp2k import TrainingDefense, register_defense

    @register_defense("{name}")
    class Demo(TrainingDefense):
        needs_eps = False
        def training_loss(self, model, x, y, generator):
            return F.cross_entropy(model(x), y)
''')


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "demo_plugin.py").write_text(PLUGIN.format(name="demo"))
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs libfoo')\n")
    yield tmp_path
    _registry.DEFENSES.unregister("demo")
    for mod in ("demo_plugin", "broken_plugin"):
        sys.modules.pop(mod, None)
    _registry.reset_plugin_loading()


def _use_entry_points(monkeypatch, *eps):
    monkeypatch.setattr(_registry, "_entry_points", lambda: list(eps))
    _registry.reset_plugin_loading()


def test_entry_point_plugin_is_discovered(plugin_dir, monkeypatch):
    _use_entry_points(monkeypatch, EntryPoint("demo", "demo_plugin", "advrp2k"))
    assert "demo" in _registry.DEFENSES.names()


def test_autoload_switch_skips_entry_points(plugin_dir, monkeypatch):
    monkeypatch.setenv(_registry.AUTOLOAD_ENV, "1")
    _use_entry_points(monkeypatch, EntryPoint("demo", "demo_plugin", "advrp2k"))
    assert "demo" not in _registry.DEFENSES.names() and "madry" in _registry.DEFENSES.names()


def test_broken_plugin_is_named_and_breaks_nothing_else(plugin_dir, monkeypatch):
    _use_entry_points(monkeypatch, EntryPoint("broken", "broken_plugin", "advrp2k"),
                      EntryPoint("demo", "demo_plugin", "advrp2k"))
    assert "demo" in _registry.DEFENSES.names()
    failures = _registry.load_failures()
    assert "broken" in failures and "needs libfoo" in failures["broken"] and _registry.AUTOLOAD_ENV in failures["broken"]
    result = CliRunner().invoke(cli, ["list", "defenses"])
    assert result.exit_code == 0 and "demo" in result.output and "broken" in result.output
    bad = CliRunner().invoke(cli, ["eval", "--defense", "broken"])
    assert bad.exit_code == 1 and "needs libfoo" in bad.output


def test_dash_p_loads_a_local_uninstalled_plugin(tmp_path):
    (tmp_path / "my_local_defense.py").write_text(PLUGIN.format(name="local_demo"))
    env = {**os.environ, "ADVRP2K_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", "from advrp2k.cli import main; main()", "-p", "my_local_defense",
                          "plugins"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "local_demo" in out.stdout and "local (not installed)" in out.stdout
    missing = subprocess.run([sys.executable, "-c", "from advrp2k.cli import main; main()", "-p", "nope_mod", "list"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "nope_mod" in missing.stderr and "Traceback" not in missing.stderr


def test_plugins_lists_distribution_and_version():
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0
    assert any(line.split()[:3] == ["defense", "madry", "advrp2k"] for line in result.output.splitlines())


def test_defense_args_are_parsed_as_literals_never_evaluated():
    args = parse_key_values(["steps=2", "beta=6.0", "name=abc", "cmd=__import__('os').system('x')"])
    assert args == {"steps": 2, "beta": 6.0, "name": "abc", "cmd": "__import__('os').system('x')"}


def _builtin_defenses() -> list[str]:
    from advrp2k.plugins.registry import DEFENSES

    return [n for n in DEFENSES.names() if DEFENSES.info(n).module.startswith("advrp2k.")]


def test_every_builtin_defense_is_checked():
    assert {"standard", "madry", "fast_fgsm"} <= set(_builtin_defenses())


@pytest.mark.parametrize("name", _builtin_defenses())
def test_builtin_defenses_pass_the_contract(name):
    results = check_defense(name, "8/255")
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_contract_catches_a_nondeterministic_test_time_defense(plugin_dir):
    (plugin_dir / "noisy_plugin.py").write_text(textwrap.dedent('''
        import torch
        from advrp2k import TestTimeDefense, register_defense

        class Noisy(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m
            def forward(self, x):
                return self.m(x + 0.1 * torch.randn_like(x))

        @register_defense("noisy")
        class NoisyDefense(TestTimeDefense):
            needs_eps = False
            def wrap(self, model):
                return Noisy(model)
    '''))
    import noisy_plugin  # noqa: F401

    try:
        results = {r.check: r.passed for r in check_defense("noisy")}
        assert results["deterministic forward"] is False and results["output shape"] is True
        cli_result = CliRunner().invoke(cli, ["plugins", "check", "noisy"])
        assert cli_result.exit_code == 1 and "FAIL  deterministic forward" in cli_result.output
    finally:
        _registry.DEFENSES.unregister("noisy")


def test_a_defense_takes_protocol_settings_through_its_hook_and_defense_arg_overrides():
    from advrp2k.jobs.job import Job
    from advrp2k.jobs.model_store import defense_for
    from advrp2k.jobs.protocols import get_protocol
    from advrp2k.core.eps import parse_eps

    eps = parse_eps("8/255")
    for protocol, steps in (("quick", 3), ("paper", 7)):
        _, madry = defense_for(Job("madry", get_protocol(protocol), eps=eps))
        assert madry.config()["attack"]["steps"] == steps
    _, madry = defense_for(Job("madry", get_protocol("paper"), eps=eps, defense_args={"steps": 2}))
    assert madry.config()["attack"]["steps"] == 2
    _, standard = defense_for(Job("standard", get_protocol("paper")))  # no hook: no options
    assert "attack" not in standard.config()


def test_the_listing_read_from_sources_is_what_the_registries_hold():
    """``advrp2k list`` reads the built-in plugins (and torchattacks' ta: family) from their
    sources without importing them; it must list exactly what importing them registers."""
    from advrp2k import Attack
    from advrp2k.plugins.listing import DEFAULT_THREATS, from_registries, from_sources

    assert Attack.threats == DEFAULT_THREATS  # what an attack class without its own serves
    _registry.load_plugins()
    builtin = {p for p in from_registries() if _registry.REGISTRIES[p.kind].info(p.name).module in _registry.BUILTIN_MODULES}
    read = from_sources(_registry.BUILTIN_MODULES)
    assert read is not None and len(read) == len(set(read))
    assert set(read) == builtin
    by_name = {p.name: p for p in read}
    assert by_name["pgd"].threats == ("linf", "l2", "switch") and by_name["patch_rs"].threats == ("patch",)
    assert by_name["ta:PGDL2"].threats == ("l2",) and by_name["ta:PGDL2"].library.startswith("torchattacks ")
    assert "ta:CW" not in by_name  # refused: no budget


def test_a_module_the_listing_cannot_read_is_imported_instead():
    from advrp2k.plugins.listing import from_sources

    assert from_sources(("advrp2k.core.eps",)) is None  # registers nothing it can see
    assert from_sources(("no_such_module_here",)) is None


def test_list_reports_installed_plugins_and_broken_ones_without_loading_the_builtins(plugin_dir, monkeypatch):
    _use_entry_points(monkeypatch, EntryPoint("broken", "broken_plugin", "advrp2k"),
                      EntryPoint("demo", "demo_plugin", "advrp2k"))
    result = CliRunner().invoke(cli, ["list", "defenses"])
    assert result.exit_code == 0, result.output
    listed = result.output.splitlines()[0].removeprefix("defenses: ").split(", ")
    assert sorted(listed) == listed and {"demo", "madry", "standard"} <= set(listed) and len(listed) == len(set(listed))
    assert "broken" in result.output and "needs libfoo" in result.output
