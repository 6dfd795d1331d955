import pytest

import advrp2k
from advrp2k._registry import ATTACKS, DEFENSES, Registry
from advrp2k.errors import PluginError


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


def test_pattern_listing():
    assert advrp2k.list_archs("resnet*") == ["resnet18", "resnet34"]


def test_builtin_provenance_names_package():
    info = ATTACKS.info("pgd")
    assert info.provenance()["package"] == "advrp2k" and info.version == advrp2k.__version__
