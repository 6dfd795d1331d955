import pytest

import advrp2k
from advrp2k.plugins.registry import ATTACKS, DEFENSES, Registry
from advrp2k.core.errors import PluginError


def test_builtins_registered():
    assert {"pgd"} <= set(ATTACKS.names())
    assert {"standard", "madry"} <= set(DEFENSES.names())
    assert {"rp2k", "rp2k_synth"} <= set(advrp2k.DATASETS.names())
    assert {"resnet34", "resnet18", "smallcnn"} <= set(advrp2k.list_archs())


def test_duplicate_name_is_an_error():
    reg = Registry("thing")
    reg.register("x")(type("A", (), {}))
    with pytest.raises(PluginError, match="registered twice"):
        reg.register("x")(type("B", (), {}))


def test_unknown_name_lists_known():
    with pytest.raises(PluginError, match=r"unknown defense 'nope'.*madry.*standard"):
        DEFENSES.get("nope")


def test_unknown_names_suggest_the_closest_and_say_how_to_add_one():
    from advrp2k.plugins.registry import ARCHS, ATTACKS
    from advrp2k.core.errors import UsageError

    with pytest.raises(UsageError, match=r"unknown defense 'mardy': did you mean 'madry'\?"):
        DEFENSES.get("mardy")
    with pytest.raises(PluginError, match=r"did you mean 'smallcnn'.*@register_arch\('mycnn'\).*-p MODULE"):
        ARCHS.get("mycnn")
    with pytest.raises(PluginError) as info:
        ATTACKS.get("zzz")
    assert "advrp2k list attacks" in str(info.value) and "autoattack" not in str(info.value)  # no 32-name list


def test_an_unknown_name_on_the_command_line_exits_2_with_a_suggestion():
    from click.testing import CliRunner

    from advrp2k.cli import cli

    for args in (["eval", "--defense", "mardy"], ["eval", "--attacks", "pgdd"], ["eval", "--arch", "mycnn"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "did you mean" in result.output, (args, result.output)


def test_pattern_listing():
    assert advrp2k.list_archs("resnet*") == ["resnet18", "resnet34", "resnet50"]


def test_builtin_provenance_names_package():
    info = ATTACKS.info("pgd")
    assert info.provenance()["package"] == "advrp2k" and info.version == advrp2k.__version__
