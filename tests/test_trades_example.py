"""The external example package, installed with pip and run through the CLI end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "advrp2k-trades"


@pytest.fixture(scope="module")
def trades_site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                          "--target", str(target), str(EXAMPLE)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return target


def _cli(args, site, home):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "ADVRP2K_HOME": str(home), "ADVRP2K_NO_PROGRESS": "1"}
    return run_cli(*args, env=env)


def test_installed_trades_runs_end_to_end(trades_site, tiny_synth, tmp_path):
    listed = _cli(["plugins"], trades_site, tmp_path / "home")
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:4] == ["defense", "trades", "advrp2k-trades", "0.1.0"] for line in listed.stdout.splitlines())
    ev = _cli(["eval", "--defense", "trades", "--eps", "8/255", "--defense-arg", "beta=3.0", "--dataset", "rp2k_synth",
               "--data", str(tiny_synth), "--epochs", "1", "--image-size", "16", "--leaderboard", str(tmp_path / "lb")],
              trades_site, tmp_path / "home")
    assert ev.returncode == 0, ev.stderr
    entry = json.loads((tmp_path / "lb/entries/rp2k_synth/linf/Zhang2019Theoretically_smallcnn_eps8-255.json").read_text())
    assert entry["plugins"]["defense"] == {"name": "trades", "module": "advrp2k_trades", "package": "advrp2k-trades",
                                           "version": "0.1.0"}
    assert entry["defense_config"]["beta"] == 3.0


def test_trades_passes_the_contract(trades_site, tmp_path):
    out = _cli(["plugins", "check", "trades"], trades_site, tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASS") >= 6
