"""Helpers shared by the tests: random batches, the CLI in this process, the CLI and Python in a
new process. One copy each, instead of one per test file."""
from __future__ import annotations

import subprocess
import sys

import torch
from click.testing import CliRunner

#: The CLI as a new process (``python -m advrp2k`` works too; this form needs no __main__).
CLI = [sys.executable, "-c", "from advrp2k.cli import main; main()"]


def random_batch(n: int, classes: int = 4, seed: int = 0, uint8: bool = False, size: int = 8):
    """``n`` random ``size`` x ``size`` RGB images (float in [0, 1], or uint8) and labels, seeded."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    if uint8:
        x = (x * 255).to(torch.uint8)
    return x, torch.randint(0, classes, (n,), generator=g)


def invoke(*args, catch_exceptions: bool = True):
    """``advrp2k ARGS`` in this process (click's runner); every argument is passed as a string."""
    return CliRunner().invoke(_cli(), [str(a) for a in args], catch_exceptions=catch_exceptions)


def _cli():
    from advrp2k.cli import cli

    return cli


def run_cli(*args, env: dict | None = None, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``advrp2k ARGS`` in a new process, output captured as text."""
    return subprocess.run([*CLI, *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def run_python(code: str, env: dict | None = None, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -c CODE`` in a new process, output captured as text."""
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values and equal signs of zero (torch.equal alone calls -0.0 and +0.0 equal)."""
    return torch.equal(a, b) and torch.equal(torch.signbit(a), torch.signbit(b))


def madry_smallcnn_weights(run_dir, aten_pools: bool = False, aten_batchnorms: bool = False) -> dict:
    """The state dict of a width-4 smallcnn after 2 Madry epochs (PGD-2 at 8/255) on 48 seeded 8 px
    images of 3 classes, with ATen's pools and/or BatchNorms in place of smallcnn's own if asked."""
    from advrp2k.core.eps import parse_eps
    from advrp2k.models.architectures import with_aten_layers
    from advrp2k.models.factory import create_model
    from advrp2k.plugins.defense import create_defense
    from advrp2k.train.trainer import TrainSettings, train

    torch.manual_seed(0)
    x, y = random_batch(48, classes=3, seed=1, uint8=True)
    model = with_aten_layers(create_model("smallcnn", 3, width=4), aten_pools, aten_batchnorms)
    defense = create_defense("madry", eps=parse_eps("8/255"), steps=2)
    return train(model, defense, x, y, TrainSettings(epochs=2, batch_size=16, lr_decay_every=1),
                 run_dir, torch.device("cpu")).state_dict()


def madry_weights_are_aten_s(tmp_path, **aten) -> bool:
    """Whether that training gives bit-identical weights with smallcnn's own layers and with ATen's
    (``aten_pools``/``aten_batchnorms`` True), and the weights moved from their initial values."""
    from advrp2k.models.factory import create_model

    fast, native = madry_smallcnn_weights(tmp_path / "fast"), madry_smallcnn_weights(tmp_path / "native", **aten)
    torch.manual_seed(0)
    initial = create_model("smallcnn", 3, width=4).state_dict()
    return (fast.keys() == native.keys() and all(bits_equal(fast[k], native[k]) for k in fast if fast[k].is_floating_point())
            and any(not torch.equal(fast[k], initial[k]) for k in fast))
