"""A newcomer's smaller frictions, each answered where it happens."""
import torchvision

from helpers import invoke


def test_a_float_budget_off_the_255_grid_gets_a_note():
    result = invoke("train", "--defense", "madry", "--eps", "0.03", "--epochs", "0")  # refused after parsing
    assert "0.03 is 7.65/255, not 8/255" in result.output
    assert "note:" not in invoke("train", "--defense", "madry", "--eps", "8/255", "--epochs", "0").output


def test_a_bare_torchvision_state_dict_is_explained():
    from advrp2k.core.errors import CheckpointError
    from advrp2k.jobs.model_store import _model_from_state

    state = torchvision.models.resnet18(num_classes=5).state_dict()
    try:
        _model_from_state({"arch": "resnet18"}, state, 5, "net.pt")
    except CheckpointError as exc:
        assert "Normalize" in str(exc) and "'0.mean'" in str(exc) and "register_arch" in str(exc)
    else:
        raise AssertionError("a bare torchvision state dict was accepted")


def test_every_arch_pretrained_promises_is_listed():
    from advrp2k.models.backbones import TORCHVISION

    listed = invoke("list", "archs").output
    assert all(name in listed for name in TORCHVISION)


def test_compare_says_what_a_and_b_are():
    assert "entry files" in invoke("compare", "--help").output


def test_unknown_names_suggest_the_closest_and_exit_2():
    result = invoke("eval", "--defense", "mardy")
    assert result.exit_code == 2 and "did you mean 'madry'" in result.output
