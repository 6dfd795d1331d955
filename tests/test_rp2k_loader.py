"""The loader on a fixture that mimics the real release (see conftest.fake_release)."""

import pytest
import torch

from advrp2k.data import find_rp2k_root, load_split, scan_rp2k
from advrp2k.data._mojibake import repair_name
from advrp2k.core.errors import DataError
from conftest import SKUS, mojibake


def test_root_accepted_at_all_three_levels(fake_release):
    expected = fake_release / "rp2k_dataset"
    for level in (fake_release, fake_release / "rp2k_dataset", fake_release / "rp2k_dataset" / "all"):
        assert find_rp2k_root(level) == expected


def test_not_rp2k_folder_gets_clear_error(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError, match=r"no RP2K split found .*all/train/<sku>"):
        find_rp2k_root(tmp_path / "photos")
    with pytest.raises(DataError, match="does not exist"):
        find_rp2k_root(tmp_path / "missing")


def test_meta_defines_classes_and_resolves_bad_folder_names(fake_release):
    scan = scan_rp2k(fake_release)
    assert scan.classes == sorted(SKUS)  # canonical order from meta.csv (BOM, backslashes)
    assert scan.folder_to_sku[mojibake(SKUS[0])] == SKUS[0]  # repaired
    assert scan.folder_to_sku["Seasirn+êså¦té½n+ë"] == SKUS[1]  # via image basenames
    train_labels = sorted({scan.classes[i] for _, i in scan.samples["train"]})
    test_labels = sorted({scan.classes[i] for _, i in scan.samples["test"]})
    assert train_labels == sorted(SKUS[:3]) and test_labels == sorted([SKUS[0], SKUS[1], SKUS[3]])
    assert scan.summary()["skus_only_in"] == {"train": 1, "test": 1}


def test_junk_and_truncated_images_are_refused_and_reported(fake_release):
    scan = scan_rp2k(fake_release)
    reasons = {p["path"].split("/")[-1]: p["reason"] for p in scan.problems}
    assert "truncated" in reasons["0199_truncated.jpg"]
    assert {".DS_Store", "._0100_1.jpg", "Thumbs.db", "截屏2019-12-10下午5.15.14.png"} <= set(reasons)
    used = [rel for s in scan.samples.values() for rel, _ in s]
    assert not any("truncated" in r or "MACOSX" in r or r.endswith(".png") for r in used)
    assert len(scan.samples["train"]) == 8 and len(scan.samples["test"]) == 6


def test_grayscale_and_cmyk_become_rgb(fake_release):
    scan = scan_rp2k(fake_release)
    x, y = load_split(scan, "train", 16)
    assert x.shape == (8, 3, 16, 16) and x.dtype == torch.uint8 and y.dtype == torch.int64


def test_class_indices_do_not_depend_on_unzip_tool(fake_release, tmp_path):
    """Two users whose unzip tools garble folder names differently get the same classes and fingerprint."""
    a = scan_rp2k(fake_release)
    bad = fake_release / "rp2k_dataset" / "all" / "train" / mojibake(SKUS[0])
    bad.rename(bad.parent / SKUS[0])  # the other user's tool got it right
    b = scan_rp2k(fake_release)
    assert a.classes == b.classes and a.fingerprint == b.fingerprint
    assert sorted(a.samples["train"], key=lambda t: t[1]) != [] and \
        sorted(i for _, i in a.samples["train"]) == sorted(i for _, i in b.samples["train"])


def test_without_meta_folder_names_are_repaired(fake_release):
    (fake_release / "meta.csv").unlink()
    scan = scan_rp2k(fake_release)
    assert SKUS[0] in scan.classes and mojibake(SKUS[0]) not in scan.classes


def test_scan_is_cached(fake_release, monkeypatch):
    scan_rp2k(fake_release)
    import advrp2k.data.rp2k as mod

    monkeypatch.setattr(mod, "_scan", lambda *a, **k: pytest.fail("decoded again despite cache"))
    assert scan_rp2k(fake_release).classes == sorted(SKUS)


def test_repair_name():
    assert repair_name(mojibake("贝纳颂经典系列250ml蓝山")) == "贝纳颂经典系列250ml蓝山"
    assert repair_name("0716_7768.jpg") is None and repair_name("三得利") is None


def test_synthetic_dataset_is_read_by_the_same_loader(tiny_synth):
    scan = scan_rp2k(tiny_synth)
    assert len(scan.classes) == 8 and scan.problems == []
    assert set(scan.attributes[scan.classes[0]]) >= {"product_type", "shape", "brand", "size", "flavour"}
    assert scan.summary()["skus_only_in"]["train"] == 1


def test_large_split_streams_with_identical_pixels(tiny_synth):
    from advrp2k.data.rp2k import LazyImages

    scan = scan_rp2k(tiny_synth)
    x, y = load_split(scan, "test", 16)
    lazy, y2 = load_split(scan, "test", 16, max_bytes=10)
    assert isinstance(lazy, LazyImages) and torch.equal(y, y2) and len(lazy) == len(x)
    idx = torch.tensor([3, 0, 5])
    assert torch.equal(lazy[idx], x[idx]) and torch.equal(lazy[:4][torch.tensor([1])], x[1:2])


def test_prepared_cache_of_the_release_matches_decoding(fake_release, isolated_home):
    """Mojibake folders, grayscale and CMYK JPEGs, a truncated file: the prepared cache holds
    exactly the images the decoding path gives, with the same labels, for every split."""
    from advrp2k.data.prepared import PreparedSplit, prepare

    scan = scan_rp2k(fake_release)
    decoded = {split: load_split(scan, split, 20) for split in ("train", "test")}
    prepare(scan, 20, workers=1)
    for split, (x, y) in decoded.items():
        px, py = load_split(scan, split, 20)
        assert isinstance(px, PreparedSplit) and torch.equal(py, y)
        assert torch.equal(px[torch.arange(len(y))], x)
