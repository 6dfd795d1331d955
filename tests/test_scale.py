"""The full-size stand-in, the prepared cache, and scale: many classes, a long tail, resumable prepare."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from advrp2k.cli import cli
from advrp2k.data import load_split, scan_rp2k
from advrp2k.data.prepared import PreparedSplit, prepare, prepared_dir
from advrp2k.data.rp2k import LazyImages
from advrp2k.data.synth_scale import scaled_catalogue


def test_scaled_catalogue_has_rp2ks_structure():
    c = scaled_catalogue(2388, 384_311, seed=0)
    n = np.array([s.n_train + s.n_test for s in c])
    assert len(c) == 2388 and len({s.name for s in c}) == 2388
    assert abs(n.sum() - 384_311) < 0.01 * 384_311
    assert 35 <= np.median(n) <= 60 and (n == 1).any() and n.max() >= 8000  # long tail, singles, a catch-all
    assert 60 <= sum(s.n_test == 0 for s in c) <= 110 and sum(s.n_train == 0 for s in c) == 8


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    out = tmp_path_factory.mktemp("standin") / "rp2k-small"
    result = CliRunner().invoke(cli, ["data", "synth", str(out), "--skus", "120", "--images", "900", "--size", "40",
                                      "--workers", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def test_synth_then_inspect_reports_every_sku_and_a_long_tail(stand_in):
    result = CliRunner().invoke(cli, ["data", "inspect", str(stand_in), "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["n_skus"] == 120 and report["problems"] == []
    counts = report["images_per_sku"]
    assert counts["min"] == 1 and counts["max"] > 5 * counts["median"]  # long-tailed
    sides = {__import__("PIL.Image", fromlist=["Image"]).open(p).size for p in list(stand_in.rglob("*.jpg"))[:50]}
    assert len(sides) > 5  # crops of varied size


def test_prepared_cache_gives_bit_identical_tensors_and_is_used(stand_in, isolated_home):
    scan = scan_rp2k(stand_in)
    decoded, y = load_split(scan, "test", 24)
    lazy = LazyImages(scan, "test", 24)
    folder = prepare(scan, 24, workers=2)
    prepared, y2 = load_split(scan, "test", 24)
    assert isinstance(prepared, PreparedSplit) and torch.equal(y, y2)
    idx = torch.tensor([0, 5, len(y) - 1, 3])
    assert torch.equal(prepared[idx], decoded[idx]) and torch.equal(prepared[idx], lazy[idx])
    assert torch.equal(prepared[:10][torch.arange(10)], decoded[:10])
    assert (folder / "index.json").is_file()


def test_prepare_resumes_after_an_interruption(stand_in, isolated_home, monkeypatch):
    from advrp2k.data import prepared as prep

    scan = scan_rp2k(stand_in)
    monkeypatch.setattr(prep, "SHARD", 200)
    calls = {"n": 0}
    original = prep._write_shard

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(prep, "_write_shard", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare(scan, 16, workers=1)
    folder = prepared_dir(scan.fingerprint, 16)
    assert not (folder / "index.json").exists() and len(list(folder.glob("*.npy"))) == 1
    monkeypatch.setattr(prep, "_write_shard", original)
    written = []
    monkeypatch.setattr(prep, "_write_shard", lambda path, *a: (written.append(path.name), original(path, *a)))
    prepare(scan, 16, workers=1)
    assert "train-00000.npy" not in written  # the finished shard was kept
    assert (folder / "index.json").is_file() and len(list(folder.glob("*.npy"))) >= 3


def test_eval_with_many_classes_end_to_end(stand_in, tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--defense", "standard", "--data", str(stand_in), "--epochs", "1",
                                      "--image-size", "16", "--attacks", "pgd,apgd_t", "--attack-arg", "apgd_t.steps=2",
                                      "--n-examples", "40", "--leaderboard", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    entry = json.loads(next((tmp_path / "entries").rglob("*.json")).read_text())
    assert entry["data"]["n_classes"] == 120 and entry["synthetic"] is True  # a stand-in is never labelled RP2K
    assert entry["dataset"] == "rp2k_synth_120x900" and "SYNTHETIC" in entry["data"]["description"]
    apgd_t = next(a for a in entry["attacks"] if a["name"] == "apgd_t")
    assert apgd_t["n_target_classes"] == 9  # never all 119 others


def test_prefetched_batches_from_the_cache_are_the_rows_asked_for(stand_in, isolated_home):
    from advrp2k.data.loader import RING, prefetched

    scan = scan_rp2k(stand_in)
    prepare(scan, 20, workers=2)
    x, _ = load_split(scan, "train", 20)
    assert isinstance(x, PreparedSplit)
    plan = list(torch.randperm(len(x), generator=torch.Generator().manual_seed(1)).split(7))
    for workers in (1, 3):
        got = [(b, xb.clone()) for b, xb in prefetched(x, plan, torch.device("cpu"), start=2, as_float=False,
                                                           workers=workers)]
        assert [b for b, _ in got] == list(range(2, len(plan)))
        assert all(torch.equal(xb, x[plan[b]]) for b, xb in got)  # the last batch is shorter: sliced buffer
    floats = dict(prefetched(x, plan, torch.device("cpu")))
    assert all(torch.equal(floats[b], x[plan[b]].float() / 255) for b in range(len(plan)))
    # The uint8 batches are reused buffers: a batch stays intact while the next one is taken and used.
    held = []
    for b, xb in prefetched(x, plan, torch.device("cpu"), as_float=False):
        held.append(xb)
        if b >= 1:
            assert torch.equal(held[b - 1], x[plan[b - 1]])
    assert len({t.data_ptr() for t in held}) == RING


def test_prepared_rows_read_the_same_without_preadv(stand_in, isolated_home, monkeypatch):
    scan = scan_rp2k(stand_in)
    prepare(scan, 20, workers=2)
    with_preadv, _ = load_split(scan, "test", 20)
    idx = torch.tensor([3, 0, len(with_preadv) - 1, 3])
    expected, second = with_preadv[idx], with_preadv[torch.tensor([2])]
    monkeypatch.delattr("os.preadv")  # platforms without it read a memory map instead
    without, _ = load_split(scan, "test", 20)
    assert torch.equal(without[idx], expected)
    assert torch.equal(without[1:3][torch.tensor([1])], second)


def test_a_damaged_cache_is_not_used_and_prepare_repairs_it(stand_in, isolated_home, caplog):
    from advrp2k.core.errors import DataError

    scan = scan_rp2k(stand_in)
    folder = prepare(scan, 20, workers=2)
    intact, _ = load_split(scan, "test", 20)
    last = torch.tensor([len(intact) - 1])
    expected = intact[last]
    shard = folder / "test-00000.npy"
    shard.write_bytes(shard.read_bytes()[: -3 * 20 * 20])  # the last image cut off
    with pytest.raises(DataError, match="data prepare"):  # cut short under a split already in use
        intact[last]
    fallback, _ = load_split(scan, "test", 20)
    assert not isinstance(fallback, PreparedSplit) and "repairs it" in caplog.text
    assert torch.equal(fallback[last], expected)  # the decoding path, same tensors
    prepare(scan, 20, workers=2)
    repaired, _ = load_split(scan, "test", 20)
    assert isinstance(repaired, PreparedSplit) and torch.equal(repaired[last], expected)


def test_data_prepare_command_resumes_refuses_a_full_disk_and_knows_when_it_is_done(stand_in, isolated_home,
                                                                                      monkeypatch):
    from advrp2k.data import prepared as prep

    monkeypatch.setattr(prep, "SHARD", 150)
    original = prep._write_shard
    calls = {"n": 0}

    def interrupted_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*a, **k)

    run = lambda: CliRunner().invoke(cli, ["data", "prepare", str(stand_in), "--image-size", "12", "--workers", "1"])
    monkeypatch.setattr(prep, "_write_shard", interrupted_second)
    result = run()
    assert result.exit_code == 130 and "run the same command again to resume" in result.output
    monkeypatch.setattr(prep, "_write_shard", original)
    real_usage = prep.shutil.disk_usage
    monkeypatch.setattr(prep.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    result = run()
    assert result.exit_code == 74 and "GiB are free there" in result.output and "ADVRP2K_HOME" in result.output
    monkeypatch.setattr(prep.shutil, "disk_usage", real_usage)
    assert run().exit_code == 0 and str(isolated_home) in run().output
    result = run()
    assert result.exit_code == 0 and "already prepared" in result.output
