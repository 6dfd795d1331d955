"""CUDA checks, run with `python3 -m pytest -m gpu` on a machine with a GPU."""
import json

import pytest
import torch
from click.testing import CliRunner

from advrp2k import parse_eps
from advrp2k.cli import cli
from advrp2k.eval.evaluator import AttackSpec, evaluate
from conftest import tiny_cnn

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_evaluation_matches_cpu():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(96, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    y = torch.randint(0, 4, (96,), generator=g)
    spec = [AttackSpec("pgd", {"steps": 10, "random_start": False})]
    eps = [parse_eps("4/255"), parse_eps("8/255")]
    cpu = evaluate(tiny_cnn(seed=1), x, y, spec, eps, torch.device("cpu"))
    gpu = evaluate(tiny_cnn(seed=1), x, y, spec, eps, torch.device("cuda"))
    assert torch.equal(cpu.clean_correct, gpu.clean_correct)
    for k in ("4/255", "8/255"):  # float differences may flip an example at the boundary
        assert abs(cpu.robust_acc()[k] - gpu.robust_acc()[k]) <= 2 / 96


def test_cli_trains_and_evaluates_on_cuda(tiny_synth, tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--defense", "madry", "--eps", "8/255", "--dataset", "rp2k_synth",
                                      "--data", str(tiny_synth), "--epochs", "2", "--image-size", "16",
                                      "--device", "cuda", "--leaderboard", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    entry = json.loads(next((tmp_path / "entries").rglob("*.json")).read_text())
    assert entry["reproducibility"]["device"].startswith("cuda")
