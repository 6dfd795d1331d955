import pytest

from advrp2k import parse_eps, parse_eps_list
from advrp2k.core.errors import UsageError


@pytest.mark.parametrize("text,value,label", [("8/255", 8 / 255, "8/255"), (" 4/255 ", 4 / 255, "4/255"),
                                              ("0.5", 0.5, "0.5"), ("1", 1.0, "255/255"), ("2/510", 1 / 255, "1/255")])
def test_parse_eps(text, value, label):
    eps = parse_eps(text)
    assert eps.value == pytest.approx(value) and eps.label == label


@pytest.mark.parametrize("bad", ["abc", "300/255", "-4/255", "0", "nan", "inf", "1/0", ""])
def test_parse_eps_rejects(bad):
    with pytest.raises(UsageError, match="eps"):
        parse_eps(bad)


def test_eps_list_sorted_and_deduplicated():
    assert [e.label for e in parse_eps_list("8/255,4/255,8/255")] == ["4/255", "8/255"]

