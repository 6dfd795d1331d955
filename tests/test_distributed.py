"""torchrun with gloo on the CPU, two processes: results that do not depend on the layout."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TORCHRUN = shutil.which("torchrun")
pytestmark = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not on PATH")
TINY = ["--dataset", "rp2k_synth", "--image-size", "16"]


def _env(home):
    # One thread per process: two torch processes with default threads on 2 cores slow each other 27x.
    return {**os.environ, "ADVRP2K_HOME": str(home), "ADVRP2K_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def _single(args, home, cwd):
    return subprocess.run([sys.executable, "-m", "advrp2k", *args], env=_env(home), cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def _torchrun(args, home, cwd, extra=()):
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node", "2", *extra, "-m", "advrp2k", *args]
    return subprocess.run(cmd, env=_env(home), cwd=cwd, capture_output=True, text=True, timeout=600)


def _examples(lb: Path) -> dict:
    data = json.loads(next((lb / "examples").rglob("*.json")).read_text())
    return {"clean": data["clean_correct"],
            "stages": {k: (sorted(v["done"]), sorted(zip(v["fooled"], v["adv_class"]))) for k, v in data["stages"].items()}}


@pytest.fixture(scope="module")
def checkpoint(tiny_synth, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    done = _single(["train", "--defense", "standard", "--data", str(tiny_synth), *TINY, "--epochs", "2"], home, home)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().split(": ", 1)[1])


def test_torchrun_eval_gives_the_per_example_results_of_one_process(tiny_synth, checkpoint, tmp_path):
    args = ["eval", "--defense", "standard", "--data", str(tiny_synth), *TINY, "--checkpoint", str(checkpoint),
            "--attacks", "pgd,fgsm", "--batch-size", "3"]
    one = _single(args + ["--leaderboard", "one"], tmp_path / "h1", tmp_path)
    two = _torchrun(args + ["--leaderboard", "two"], tmp_path / "h2", tmp_path)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr, two.stderr)
    assert two.stdout.count("wrote ") == 1  # one entry, printed once
    assert _examples(tmp_path / "one") == _examples(tmp_path / "two")
    e1, e2 = (json.loads(next((tmp_path / d / "entries").rglob("*.json")).read_text()) for d in ("one", "two"))
    assert (e1["clean_acc"], e1["robust_acc"], e1["per_attack"]) == (e2["clean_acc"], e2["robust_acc"], e2["per_attack"])
    assert e2["reproducibility"]["processes"] == 2 and e1["reproducibility"]["processes"] == 1
    assert e1["reproducibility"]["counts"]["attacked_examples"] == e2["reproducibility"]["counts"]["attacked_examples"]
    assert not list((tmp_path / "two" / "examples").rglob("*.rank*"))  # per-process files merged away


def test_torchrun_train_evaluates_like_one_process_and_resumes_after_a_killed_worker(tiny_synth, tmp_path):
    """A worker killed mid-epoch stops the job (torchrun ends every process); launching it again
    resumes from the last checkpoint, as a scheduler's requeue would."""
    args = ["train", "--defense", "standard", "--data", str(tiny_synth), *TINY, "--epochs", "30"]
    launch = [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "advrp2k", *args]
    proc = subprocess.Popen(launch, env=_env(tmp_path / "dist"), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((tmp_path / "dist").glob("models/*/run/state-e0003-*.pt")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "training never reached epoch 3"
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2
    os.kill(int(workers[-1]), signal.SIGKILL)  # one worker dies mid-epoch
    proc.communicate(timeout=300)
    assert proc.returncode != 0 and not list((tmp_path / "dist").glob("models/*/model.safetensors"))
    states = sorted((tmp_path / "dist").glob("models/*/run/state-*.pt"))
    assert states  # the last checkpoint survived
    again = subprocess.run(launch[:-len(args)] + ["-v", *args], env=_env(tmp_path / "dist"), cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming training at epoch" in again.stderr
    model = next((tmp_path / "dist").glob("models/*/model.safetensors"))
    side = json.loads((model.parent / "training.json").read_text())
    assert side["processes"] == 2
    single = _single(args, tmp_path / "one", tmp_path)
    assert single.returncode == 0, single.stderr
    accs = []
    for home in ("dist", "one"):
        ckpt = next((tmp_path / home).glob("models/*/model.safetensors"))
        ev = _single(["eval", "--defense", "standard", "--data", str(tiny_synth), *TINY, "--checkpoint", str(ckpt),
                      "--leaderboard", f"lb-{home}"], tmp_path / home, tmp_path)
        assert ev.returncode == 0, ev.stderr
        accs.append(json.loads(next((tmp_path / f"lb-{home}" / "entries").rglob("*.json")).read_text())["clean_acc"])
    assert abs(accs[0] - accs[1]) <= 0.25, accs  # within the noise of 22 test images


def test_a_resumed_sharded_evaluation_counts_each_process_work_once(tmp_path):
    """Two processes save their own progress; both are stopped and resumed; the finished counts
    are the work actually done (each process reads every process's saved counts on resume)."""
    from advrp2k.eval.state import EvalState

    path, header = tmp_path / "run.json", {"model": "m"}

    def work(state, rank, examples, forwards):
        state.clean_correct = [True] * 4
        state.counts["attack_forwards"] += forwards
        state.record("0:pgd@8/255", examples, [], [])

    first = [EvalState(path, header, shard=(r, 2)) for r in (0, 1)]
    work(first[0], 0, [0], 10)
    work(first[1], 1, [1], 20)  # both processes stop here
    resumed = [EvalState(path, header, shard=(r, 2)) for r in (0, 1)]
    assert all(s.counts["attack_forwards"] == 30 for s in resumed)  # each reads both files
    work(resumed[0], 0, [2], 1)
    work(resumed[1], 1, [3], 2)
    parts = [s.as_dict() for s in resumed]
    for s in resumed:
        s.finish(parts)
    assert resumed[0].counts["attack_forwards"] == 10 + 20 + 1 + 2
    assert EvalState(path, header).counts["attack_forwards"] == 33  # the published file too
