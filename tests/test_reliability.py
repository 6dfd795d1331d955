"""Concurrency, full disks, unwritable folders, degenerate data, hostile options and files.

Each test runs advrp2k as a user would (the CLI, often as a real process) and checks the one
line it prints, its exit status, and that nothing half-written or wrong is left behind.
"""
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from advrp2k.cli.group import EXIT_OUTPUT
from helpers import invoke as run
from helpers import CLI

FAST = ["--epochs", "1", "--image-size", "16"]


def _proc(args, home, cwd):
    # One thread each: two torch processes with default threads on 2 cores slow each other 27x.
    env = {**os.environ, "ADVRP2K_HOME": str(home), "ADVRP2K_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(CLI + args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_racing_on_one_empty_cache_share_the_work(tmp_path):
    """Both finish; the second waits for the first and reuses its dataset, model and results."""
    args = ["eval", "--defense", "standard", "--epochs", "1", "--image-size", "16", "--n-examples", "40",
            "--leaderboard", "lb"]
    procs = [_proc(args, tmp_path / "home", tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    assert any("waiting for another advrp2k run" in err for _, err in outs)
    models = list((tmp_path / "home" / "models").glob("*/model.safetensors"))
    assert len(models) == 1  # trained once
    entry = json.loads((tmp_path / "lb" / "entries" / "rp2k_synth" / "linf" / "Standard_smallcnn.json").read_text())
    assert entry["reproducibility"]["checkpoint_sha256"] == hashlib.sha256(models[0].read_bytes()).hexdigest()
    examples = json.loads((tmp_path / "lb" / "examples" / "rp2k_synth" / "linf" / "Standard_smallcnn.json").read_text())
    assert examples["complete"] and examples["header"]["checkpoint_sha256"] == entry["reproducibility"]["checkpoint_sha256"]
    assert outs[0][0].split("wrote")[0] == outs[1][0].split("wrote")[0]  # the same table


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()


def test_full_disk_under_leaderboard_is_one_line_before_any_work(tiny_synth, tmp_path, isolated_home):
    with tmpfs(tmp_path / "full", "size=512k") as full:
        _fill(full)
        result = run("eval", "--defense", "standard", "--data", str(tiny_synth), "--dataset", "rp2k_synth",
                     *FAST, "--leaderboard", str(full / "lb"))
        assert result.exit_code == EXIT_OUTPUT, result.output
        assert f"--leaderboard {full / 'lb'} is not writable" in result.output and "disk is full" in result.output
        assert len(result.output.strip().splitlines()) == 1
        assert not (isolated_home / "models").exists()  # no training happened
        assert not (full / "lb").exists()


def test_disk_filling_up_mid_run_is_one_line_and_leaves_nothing_half_written(tmp_path):
    """The cache disk has room for the probe but not for the generated dataset."""
    with tmpfs(tmp_path / "small", "size=1m") as small:
        proc = _proc(["eval", "--defense", "standard", "--leaderboard", str(tmp_path / "lb")], small / "home", tmp_path)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == EXIT_OUTPUT, err
        assert "Traceback" not in err and "No space left on device" in err and "disk is full" in err
        assert not list((small / "home" / "datasets").glob("rp2k_synth*/all"))  # no half dataset
        assert not list((small / "home" / "datasets").glob(".synth-*"))  # temporary folder removed
        assert not (tmp_path / "lb" / "entries").exists()


def test_read_only_leaderboard_is_refused_before_work(tiny_synth, tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        result = run("eval", "--defense", "standard", "--data", str(tiny_synth), *FAST, "--leaderboard", str(ro))
        assert result.exit_code == EXIT_OUTPUT and "read-only" in result.output, result.output


def test_permission_denied_and_uncreatable_paths(tiny_synth, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("x")
    result = run("eval", "--defense", "standard", "--data", str(tiny_synth), *FAST,
                 "--leaderboard", str(tmp_path / "a-file" / "lb"))
    assert result.exit_code == EXIT_OUTPUT and "is not a folder" in result.output
    import tempfile

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    # Running as root, permissions cannot be denied for real: simulate the operating system's answer.
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    result = run("eval", "--defense", "standard", "--data", str(tiny_synth), *FAST,
                 "--leaderboard", str(tmp_path / "lb"))
    assert result.exit_code == EXIT_OUTPUT and "permission denied" in result.output.lower()
    assert "Traceback" not in result.output


def test_single_sku_copy_is_an_error_not_a_perfect_score(tiny_synth, tmp_path):
    one = tmp_path / "one-sku"
    for split in ("train", "test"):
        first = sorted((tiny_synth / "all" / split).iterdir())[0]
        shutil.copytree(first, one / "all" / split / first.name)
    result = run("eval", "--defense", "standard", "--data", str(one), *FAST, "--leaderboard", str(tmp_path / "lb"))
    assert result.exit_code == 1 and "at least two classes" in result.output, result.output
    assert not (tmp_path / "lb" / "entries").exists()
    inspect = run("data", "inspect", str(one))
    assert inspect.exit_code == 1 and "at least two" in inspect.output


def test_inspect_exits_non_zero_when_no_image_is_usable(tmp_path):
    folder = tmp_path / "broken" / "all" / "train" / "sku"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (folder / "b.png").write_bytes(b"\x89PNG")
    result = run("data", "inspect", str(tmp_path / "broken"))
    assert result.exit_code == 1 and "no usable image" in result.output


@pytest.mark.parametrize("arg, says", [
    ("steps=__import__('os')", "must be an integer"),
    ("steps=1e9", "must be an integer"),
    ("steps=1000000000", "must be in [1, 1000]"),
    ("stpes=3", "has no option 'stpes'"),
    ("step_size=-1", "must be in [0, 1]"),
])
def test_plugin_options_are_typed_and_range_checked_before_any_work(arg, says, isolated_home, tmp_path):
    result = run("eval", "--defense", "madry", "--eps", "8/255", "--defense-arg", arg,
                 "--leaderboard", str(tmp_path / "lb"))
    assert result.exit_code == 2 and says in result.output, result.output
    assert "Traceback" not in result.output and not (isolated_home / "datasets").exists()


def test_attack_suite_checks(isolated_home, tmp_path):
    twice = run("eval", "--defense", "standard", "--attacks", "pgd,pgd", "--leaderboard", str(tmp_path / "lb"))
    assert twice.exit_code == 2 and "listed twice" in twice.output
    assert not (isolated_home / "datasets").exists()
    listing = run("plugins")
    assert "steps: int, in [1, 1000], default 7" in listing.output  # madry's declared option
    assert "loss: str, one of ce|cw, default ce" in listing.output  # pgd's


def test_leaderboard_validate_and_build_survive_whatever_is_in_entries(tmp_path):
    from advrp2k.board.entries import MAX_ENTRY_BYTES

    from test_leaderboard import good_entry

    lb = tmp_path / "lb"
    folder = lb / "entries" / "rp2k_synth" / "linf"
    folder.mkdir(parents=True)
    good = folder / "Standard_smallcnn.json"
    good.write_text(json.dumps(good_entry()))
    (folder / "dir.json").mkdir()  # a folder is walked into, not read as an entry
    os.mkfifo(folder / "fifo.json")
    outside = tmp_path / "secret.json"
    outside.write_text(good.read_text())
    (folder / "link.json").symlink_to(outside)
    (lb / "entries" / "linked-folder").symlink_to(tmp_path, target_is_directory=True)
    (folder / "huge.json").write_text(json.dumps({"model_id": "x" * (MAX_ENTRY_BYTES + 10)}))
    long_field = json.loads(good.read_text())
    long_field["name"] = "N" * 100_000
    long_field["model_id"] = "long"
    (folder / "long.json").write_text(json.dumps(long_field))
    (folder / "list.json").write_text("[1, 2]")
    (folder / "bad-utf8.json").write_bytes(b"\xff\xfe{")
    result = run("leaderboard", "validate", str(lb))  # must return, not hang on the FIFO
    assert result.exit_code == 1
    out = result.output
    assert len(out) < 5000, out[:500]
    for name, says in [("fifo.json", "not a regular file"), ("link.json", "symbolic link"),
                       ("linked-folder", "not followed"), ("huge.json", "over the"), ("long.json", "too long (100000"),
                       ("list.json", "must be a JSON object"), ("bad-utf8.json", "not read")]:
        assert any(name in line and says in line for line in out.splitlines()), (name, out)
    assert "1 valid entries, 7 problems" in out
    built = run("leaderboard", "build", str(lb), "--out", str(tmp_path / "site"))
    assert built.exit_code == 0 and "from 1 entries" in built.output


def test_bad_resume_file_is_set_aside_and_evaluation_starts_over(tiny_synth, tmp_path, caplog):
    args = ["eval", "--defense", "standard", "--data", str(tiny_synth), "--dataset", "rp2k_synth", *FAST, "--n-examples", "12",
            "--leaderboard", str(tmp_path / "lb")]
    first = run(*args)
    assert first.exit_code == 0
    published = tmp_path / "lb" / "examples" / "rp2k_synth" / "linf" / "Standard_smallcnn.json"
    reference = json.loads(published.read_text())
    for bad in ({"header": reference["header"], "stages": [], "complete": False, "clean_correct": None},
                {"header": reference["header"], "stages": {"0:pgd@4/255": {"done": ["x"], "fooled": []}},
                 "complete": False, "clean_correct": [True]},
                [1, 2, 3], {"header": reference["header"], "complete": "yes"}):
        published.write_text(json.dumps(bad))
        caplog.clear()
        with caplog.at_level("WARNING"):
            again = run(*args)
        assert again.exit_code == 0 and "Traceback" not in again.output, again.output
        assert "cannot be used" in caplog.text and "set aside" in caplog.text
        assert json.loads(published.read_text())["stages"] == reference["stages"]
    assert len(list(published.parent.glob("Standard_smallcnn.json.bad-*"))) == 4  # kept, not deleted


def test_submit_refuses_bad_fields_before_any_work_and_leaves_nothing(isolated_home, tmp_path):
    result = run("submit", "--defense", "standard", "--name", "n" * 10_000, "--authors", "A. Person",
                 "--link", "http://insecure.example", "--leaderboard", str(tmp_path / "lb"))
    assert result.exit_code == 2
    assert "too long (10000 characters; at most 200)" in result.output and "https://" in result.output
    assert len(result.output) < 1000
    assert not (tmp_path / "lb").exists() and not (isolated_home / "datasets").exists()


def test_eval_defaults_to_the_standard_defense_but_submit_needs_one_named(isolated_home, tmp_path):
    from advrp2k.cli.job_options import _job_options

    defense = next(p for p in _job_options(lambda **k: None).__click_params__ if p.name == "defense")
    assert defense.default == "standard"
    result = run("submit", "--name", "Mine", "--authors", "A. Person", "--link", "https://example.org",
                 "--leaderboard", str(tmp_path / "lb"))
    assert result.exit_code == 2 and "submit needs --defense NAME" in result.output
    assert not (tmp_path / "lb").exists() and not (isolated_home / "datasets").exists()
