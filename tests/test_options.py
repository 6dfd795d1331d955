"""Plugin options declared once: the declaration decides parsing, attributes, config() (the
cache keys) and the listing; a plugin cannot leave an option out of its training key."""
import re
import sys

import pytest

from advrp2k import Option, TrainingDefense, create_attack, create_defense
from advrp2k.core.eps import parse_eps
from advrp2k.plugins import registry as _registry
from advrp2k.testing import check_options_keyed
from helpers import invoke

EPS = parse_eps("8/255")


def _readme_template() -> str:
    """The plugin sketch exactly as the README shows it."""
    readme = open("README.md", encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    return next(b for b in blocks if "register_defense(\"mydefense\")" in b)


@pytest.fixture
def readme_plugin(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "readme_plugin.py").write_text(_readme_template())
    yield "readme_plugin"
    _registry.DEFENSES.unregister("mydefense")
    sys.modules.pop("readme_plugin", None)


def test_declared_options_become_attributes_and_the_recorded_config():
    attack = create_attack("pgd", EPS, steps=5)
    assert attack.steps == 5 and attack.step_size == pytest.approx(2.5 * EPS.value / 5)
    config = attack.config()
    assert config["name"] == "pgd" and config["steps"] == 5 and config["early_stop"] is True
    assert config["step_size"] == attack.step_size  # the derived value, what ran
    madry = create_defense("madry", EPS, steps=3)
    assert madry.config()["steps"] == 3 and madry.config()["attack"]["steps"] == 3


def test_every_builtin_option_changes_the_config():
    from advrp2k.plugins.registry import ATTACKS, DEFENSES

    for name in DEFENSES.names():
        result = check_options_keyed(name)
        assert result.passed, (name, result.detail)
    for name in ("pgd", "pgd_cw", "fgsm", "square", "apgd_ce", "apgd_t", "autoattack"):
        base = create_attack(name, EPS).config()
        for key, opt in ATTACKS.get(name).options.items():
            other = {bool: lambda d: not d, int: lambda d: d + 1, float: lambda d: 0.5 if d != 0.5 else 0.25,
                     str: lambda d: next(c for c in opt.choices if c != d)}[opt.type](opt.default)
            assert create_attack(name, EPS, **{key: other}).config() != base, (name, key)


def test_readme_template_with_two_option_values_trains_two_models(readme_plugin, tiny_synth, tmp_path):
    tiny = ["--dataset", "rp2k_synth", "--epochs", "1", "--image-size", "16", "--data", str(tiny_synth),
]
    outputs = []
    for steps in (1, 2, 2):
        result = invoke("-p", readme_plugin, "train", "--defense", "mydefense", "--eps", "8/255",
                        "--defense-arg", f"steps={steps}", *tiny)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert "reused cached model" not in outputs[1]  # steps=2 is not steps=1's model
    assert "reused cached model" in outputs[2]  # the same value is


def test_a_plugin_whose_config_leaves_an_option_out_fails_the_check():
    from advrp2k import register_defense

    @register_defense("forgetful")
    class Forgetful(TrainingDefense):
        options = {"steps": Option(int, 5, min=1, max=100)}

        def config(self):
            return {"eps": self.eps.value}  # forgets steps

        def training_loss(self, model, x, y, generator):
            raise NotImplementedError

    try:
        result = check_options_keyed("forgetful")
        assert not result.passed and "steps" in result.detail
    finally:
        _registry.DEFENSES.unregister("forgetful")


def test_an_older_plugin_naming_its_options_in_init_is_keyed_by_what_it_was_given():
    from advrp2k import register_defense

    @register_defense("older")
    class Older(TrainingDefense):
        def __init__(self, eps=None, beta: float = 1.0):
            super().__init__(eps)
            self.beta = beta

        def training_loss(self, model, x, y, generator):
            raise NotImplementedError

    try:
        assert create_defense("older", EPS, beta=2.0).config()["beta"] == 2.0
        assert create_defense("older", EPS).config()["beta"] == 1.0
        with pytest.raises(Exception, match="no option 'gamma'"):
            create_defense("older", EPS, gamma=1.0)
    finally:
        _registry.DEFENSES.unregister("older")


def test_a_defense_without_options_refuses_one():
    with pytest.raises(Exception, match="no option 'steps'"):
        create_defense("standard", None, steps=3)


def test_an_option_may_not_hide_a_class_attribute():
    class Shadow(TrainingDefense):
        options = {"config": Option(int, 1)}

    with pytest.raises(TypeError, match="would hide"):
        Shadow(EPS)
