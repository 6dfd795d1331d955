"""Data integrity end to end: no silently wrong pixels, labels, settings or stale caches, and a
one-line error for every hostile input file (issue: data integrity)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advrp2k.data import load_split, scan_rp2k
from advrp2k.data.prepared import PreparedSplit, is_prepared, prepare
from advrp2k.core.errors import DataError
from conftest import SKUS, jpeg_bytes
from helpers import invoke as _run

REPO = Path(__file__).resolve().parents[1]


def _one_line_error(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    for needle in needles:
        assert needle in result.output, result.output


def _train_dir(release: Path, k: int = 1) -> Path:
    return release / "rp2k_dataset" / "all" / "train" / SKUS[k]


def _usable(scan) -> set[str]:
    return {Path(rel).name for split in scan.samples.values() for rel, _ in split}


def _reasons(scan) -> dict[str, str]:
    return {Path(p["path"]).name: p["reason"] for p in scan.problems}


# --- content-verified caches ---------------------------------------------------------------

def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, same header: only the content changes
    path.write_bytes(bytes(data))


def test_changed_bytes_in_a_prepared_shard_are_not_used_and_prepare_repairs_them(tiny_synth, tmp_path, caplog):
    release = shutil.copytree(tiny_synth, tmp_path / "copy")
    scan = scan_rp2k(release)
    folder = prepare(scan, 16, workers=1)
    decoded = _decoded_split(scan, "test", 16, tmp_path)
    _flip_middle_byte(folder / "test-00000.npy")
    assert not is_prepared(scan, 16)
    x, _ = load_split(scan, "test", 16)
    assert not isinstance(x, PreparedSplit) and "checksum mismatch" in caplog.text and "data prepare" in caplog.text
    assert torch.equal(x[:], decoded)  # the decoding path: the right pixels
    result = _run("data", "prepare", release, "--image-size", 16, "--workers", 1)
    assert result.exit_code == 0 and "already prepared" not in result.output
    repaired, _ = load_split(scan, "test", 16)
    assert isinstance(repaired, PreparedSplit) and torch.equal(repaired[np.arange(len(repaired))], decoded)
    assert "already prepared" in _run("data", "prepare", release, "--image-size", 16).output


def _decoded_split(scan, split, size, tmp_path) -> torch.Tensor:
    """The split as the decoding path gives it, from a cache folder of its own."""
    from advrp2k.data.decode import decode_image, resize_to_tensor

    return torch.stack([resize_to_tensor(decode_image(Path(scan.root) / rel)[0], size) for rel, _ in scan.samples[split]])


def test_a_tensor_cache_whose_pixels_changed_is_rebuilt(tiny_synth, isolated_home, caplog):
    scan = scan_rp2k(tiny_synth)
    x, y = load_split(scan, "test", 12)
    cache = next((isolated_home / "tensors").glob("*_test_12.pt"))
    blob = torch.load(cache, weights_only=True)
    blob["x"][0] = 255 - blob["x"][0]  # other pixels, the old checksum
    torch.save(blob, cache)
    again, _ = load_split(scan, "test", 12)
    assert torch.equal(again, x) and "checksum mismatch" in caplog.text


def _same_length_jpegs() -> tuple[bytes, bytes]:
    by_len: dict[int, bytes] = {}
    for seed in range(1000, 3000):
        data = jpeg_bytes(seed)
        if len(data) in by_len:
            return by_len[len(data)], data
        by_len[len(data)] = data
    raise AssertionError("no two test JPEGs of one length")


def test_an_image_replaced_by_one_of_the_same_size_and_time_is_seen(fake_release):
    target = next(p for p in sorted(_train_dir(fake_release, 0).parent.glob("*/*.jpg")) if "truncated" not in p.name)
    a, b = _same_length_jpegs()
    target.write_bytes(a)
    before = scan_rp2k(fake_release)
    st = target.stat()
    target.write_bytes(b)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # as rsync -a or cp -p keep it
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    after = scan_rp2k(fake_release)
    assert after.fingerprint != before.fingerprint
    assert after.fingerprint == scan_rp2k(fake_release, use_cache=False).fingerprint


def test_an_edited_attributes_csv_is_never_stale(tiny_synth, tmp_path):
    release = shutil.copytree(tiny_synth, tmp_path / "copy")
    table = release / "attributes.csv"
    scan = scan_rp2k(release)
    sku = scan.classes[0]
    old = scan.attributes[sku]["product_type"]
    table.write_text(table.read_text(encoding="utf-8-sig").replace(f"{sku},{old}", f"{sku},edited"), encoding="utf-8")
    assert scan_rp2k(release).attributes[sku]["product_type"] == "edited"


def test_meta_csv_content_is_part_of_the_scan_key(fake_release):
    meta = fake_release / "meta.csv"
    scan = scan_rp2k(fake_release)
    st = meta.stat()
    text = meta.read_text(encoding="utf-8-sig")
    renamed = text.replace(SKUS[2], SKUS[2][:-1] + "盒")  # same byte length: same size, another SKU name
    meta.write_text(renamed, encoding="utf-8-sig")
    os.utime(meta, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert meta.stat().st_size == st.st_size
    assert scan_rp2k(fake_release).classes != scan.classes


# --- one canonical SKU name ----------------------------------------------------------------

def _release_without_meta(tmp_path: Path, folders: dict[str, list[str]]) -> Path:
    root = tmp_path / "nometa"
    seed = 0
    for split, names in folders.items():
        for name in names:
            (root / "all" / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(2):
                seed += 1
                (root / "all" / split / name / f"{seed:04d}.jpg").write_bytes(jpeg_bytes(seed))
    return root


def test_nfc_and_nfd_folder_names_are_one_sku(tmp_path):
    nfc = "Café牛奶" + "éclair"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    root = _release_without_meta(tmp_path, {"train": [nfc, "other"], "test": [nfd, "other"]})
    scan = scan_rp2k(root)
    assert scan.classes == sorted([nfc, "other"])
    test_labels = {scan.classes[i] for _, i in scan.samples["test"]}
    assert nfc in test_labels and scan.summary()["renamed_folders"] == {nfd: nfc}


def test_two_forms_of_one_name_in_one_split_are_merged_and_said(tmp_path):
    nfc = "Crème"
    root = _release_without_meta(tmp_path, {"train": [nfc, unicodedata.normalize("NFD", nfc), "b"], "test": ["b"]})
    scan = scan_rp2k(root)
    assert scan.classes == sorted([nfc, "b"])
    assert any("merged" in n["note"] for n in scan.notes)
    assert "merged" in _run("data", "inspect", root).output


def test_latin_names_with_accents_are_not_taken_for_mojibake():
    from advrp2k.data._mojibake import repair_name
    from conftest import mojibake

    assert repair_name("Crème") is None and repair_name("Café au lait") is None
    assert repair_name(mojibake("三得利啤酒")) == "三得利啤酒"  # real mojibake is still repaired
    assert repair_name("三得利啤酒".encode("gbk").decode("cp437")) == "三得利啤酒"  # and GBK mojibake


def test_meta_csv_in_nfd_matches_nfc_folders(fake_release):
    meta = fake_release / "meta.csv"
    meta.write_text(unicodedata.normalize("NFD", meta.read_text(encoding="utf-8-sig")) + "", encoding="utf-8-sig")
    fake_release.joinpath("rp2k_dataset/all/train", SKUS[2]).rename(
        fake_release / "rp2k_dataset/all/train" / "Café")  # a folder whose name is NFC
    meta.write_text(meta.read_text(encoding="utf-8-sig").replace(SKUS[2], unicodedata.normalize("NFD", "Café")),
                    encoding="utf-8-sig")
    scan = scan_rp2k(fake_release)
    assert "Café" in scan.classes and unicodedata.normalize("NFD", "Café") not in scan.classes
    assert any(scan.classes[i] == "Café" for _, i in scan.samples["train"])
    assert not scan.notes  # one form only in meta.csv: nothing to say


def test_meta_csv_naming_one_sku_in_two_forms_says_so(fake_release):
    nfc, nfd = "Café", unicodedata.normalize("NFD", "Café")
    meta = fake_release / "meta.csv"
    rows = meta.read_text(encoding="utf-8-sig").splitlines()
    mine = [k for k, r in enumerate(rows) if f"\\{SKUS[2]}\\" in r]
    for n, k in enumerate(mine):  # SKU 2's rows, alternately in NFC and NFD
        rows[k] = rows[k].replace(f",{SKUS[2]},", f",{nfc if n % 2 else nfd},")
    meta.write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    scan = scan_rp2k(fake_release)
    assert nfc in scan.classes and nfd not in scan.classes and len(scan.classes) == 4
    assert any("2 Unicode forms" in n["note"] and nfc in n["note"] for n in scan.notes)


# --- decoding that refuses what it cannot decode whole --------------------------------------

def _cut_with_end_marker(good: bytes) -> bytes:
    return good[: len(good) // 2] + b"\xff\xd9"


def _taller_than_its_data(good: bytes) -> bytes:
    i = good.index(b"\xff\xc0")  # SOF0: length (2), precision (1), height (2), width (2)
    h = int.from_bytes(good[i + 5:i + 7], "big")
    return good[:i + 5] + (h * 8).to_bytes(2, "big") + good[i + 7:]


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_images_that_would_be_grey_filled_are_refused(fake_release):
    d = _train_dir(fake_release)
    big = jpeg_bytes(5, size=64)
    (d / "cut_eoi.jpg").write_bytes(_cut_with_end_marker(big))
    (d / "tall.jpg").write_bytes(_taller_than_its_data(big))
    (d / "renamed_png.jpg").write_bytes(_png_bytes())
    for name, data in [("cut_eoi.jpg", _cut_with_end_marker(big)), ("tall.jpg", _taller_than_its_data(big))]:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # Pillow alone accepts both, grey-filling the rest: the reason for the check
    scan = scan_rp2k(fake_release)
    reasons = _reasons(scan)
    assert "filled with grey" in reasons["cut_eoi.jpg"] and "filled with grey" in reasons["tall.jpg"]
    assert "PNG image named like a JPEG" in reasons["renamed_png.jpg"]
    assert not {"cut_eoi.jpg", "tall.jpg", "renamed_png.jpg"} & _usable(scan)
    assert len(scan.samples["train"]) == 8  # every good image still used


def test_pixel_and_size_limits(fake_release, monkeypatch):
    from advrp2k.data import decode

    d = _train_dir(fake_release)
    (d / "huge.jpg").write_bytes(jpeg_bytes(7, size=64))
    monkeypatch.setattr(decode, "MAX_PIXELS", 32 * 32)
    scan = scan_rp2k(fake_release)
    assert "over the limit" in _reasons(scan)["huge.jpg"]
    monkeypatch.setattr(decode, "MAX_PIXELS", 50_000_000)
    monkeypatch.setattr(decode, "MAX_FILE_BYTES", 2000)
    scan = scan_rp2k(fake_release, use_cache=False)
    assert "larger than" in _reasons(scan)["huge.jpg"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_devices_and_broken_links_are_refused_without_hanging(fake_release):
    d = _train_dir(fake_release)
    os.mkfifo(d / "fifo.jpg")
    (d / "zero.jpg").symlink_to("/dev/zero")
    (d / "broken.jpg").symlink_to(d / "does-not-exist.jpg")
    (d / "linked_good.jpg").symlink_to(next(p for p in sorted(d.glob("0*.jpg")) if "truncated" not in p.name))
    signal.signal(signal.SIGALRM, lambda *a: pytest.fail("the scan blocked on a FIFO or a device"))
    signal.alarm(60)
    try:
        scan = scan_rp2k(fake_release)
        result = _run("data", "inspect", fake_release)
    finally:
        signal.alarm(0)
    reasons = _reasons(scan)
    assert "a FIFO" in reasons["fifo.jpg"] and "a device" in reasons["zero.jpg"]
    assert "broken symbolic link" in reasons["broken.jpg"]
    assert "linked_good.jpg" in _usable(scan)  # a link to a regular image is an image
    assert result.exit_code == 0 and "fifo.jpg" in result.output


def test_a_symlinked_sku_folder_is_followed_and_said(fake_release, tmp_path):
    elsewhere = tmp_path / "elsewhere" / SKUS[2]
    shutil.move(str(_train_dir(fake_release, 2)), elsewhere)
    _train_dir(fake_release, 2).symlink_to(elsewhere, target_is_directory=True)
    inner = _train_dir(fake_release, 0).parent / next(p.name for p in _train_dir(fake_release, 0).parent.iterdir()
                                                       if p.name != SKUS[2] and p.name != "__MACOSX")
    (inner / "loop").symlink_to(inner, target_is_directory=True)
    scan = scan_rp2k(fake_release)
    assert SKUS[2] in {scan.classes[i] for _, i in scan.samples["train"]}
    assert any("symbolic link" in n["note"] and "followed" in n["note"] for n in scan.notes)
    assert any("not followed" in p["reason"] for p in scan.problems)
    assert "followed" in _run("data", "inspect", fake_release).output


# --- settings from the checkpoint ---------------------------------------------------------

def _checkpoint(tmp_path: Path, scan, image_size: int, poison: bool = False) -> Path:
    from advrp2k.models.checkpoints import save_model
    from advrp2k.models.factory import create_model

    torch.manual_seed(0)
    model = create_model("smallcnn", len(scan.classes))
    if poison:
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
    record = {"arch": "smallcnn", "classes": scan.classes, "image_size": image_size}
    return save_model(tmp_path / f"model_{image_size}_{int(poison)}.safetensors", model, record)


def test_checkpoint_image_size_is_used_and_a_conflicting_option_refused(tiny_synth, tmp_path):
    from advrp2k.jobs.job import Job, load_job_data
    from advrp2k.jobs.protocols import get_protocol

    ckpt = _checkpoint(tmp_path, scan_rp2k(tiny_synth), 16)
    job = Job("standard", get_protocol("quick"), data=tiny_synth, checkpoint=ckpt)
    assert load_job_data(job).image_size == 16  # not the data's default of 64
    result = _run("eval", "--data", tiny_synth, "--checkpoint", ckpt, "--image-size", 32, "--leaderboard", tmp_path / "lb")
    _one_line_error(result, 2, "trained with image_size 16", "--image-size says 32")
    result = _run("eval", "--data", tiny_synth, "--checkpoint", ckpt, "--arch", "resnet18", "--leaderboard", tmp_path / "lb")
    _one_line_error(result, 2, "trained with arch 'smallcnn'")
    assert not (tmp_path / "lb" / "entries").exists()


def test_a_checkpoint_with_nan_weights_gets_no_entry(tiny_synth, tmp_path):
    ckpt = _checkpoint(tmp_path, scan_rp2k(tiny_synth), 16, poison=True)
    result = _run("eval", "--data", tiny_synth, "--checkpoint", ckpt, "--leaderboard", tmp_path / "lb")
    _one_line_error(result, 1, "finite weights", "no leaderboard entry was written")
    assert not list((tmp_path / "lb").rglob("*.json"))


def test_nonfinite_outputs_on_clean_inputs_fail_the_evaluation():
    from advrp2k.core.eps import parse_eps
    from advrp2k.core.errors import IntegrityError
    from advrp2k.eval.evaluator import AttackSpec, evaluate

    class NaNForOne(torch.nn.Module):  # finite weights, a NaN logit for one image
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3 * 8 * 8, 3)

        def forward(self, x):
            out = self.fc(x.flatten(1))
            return torch.where(x[:, :1, :1, :1].flatten(1) > 0.99, torch.full_like(out, float("nan")), out)

    x = torch.rand(6, 3, 8, 8) * 0.9
    x[2, 0, 0, 0] = 1.0
    with pytest.raises(IntegrityError, match="finite outputs"):
        evaluate(NaNForOne(), x, torch.zeros(6, dtype=torch.long), [AttackSpec("pgd", {"steps": 2})],
                 [parse_eps("4/255")], torch.device("cpu"), sanity_checks=False)


# --- input files: one line each, before any image is decoded --------------------------------

def _no_decoding(monkeypatch):
    import advrp2k.data.rp2k as mod

    monkeypatch.setattr(mod, "_decode_all", lambda *a, **k: pytest.fail("images decoded before the CSV was checked"))


@pytest.mark.parametrize("case, needle", [
    ("utf16", "UTF-16"), ("gbk", "GBK"), ("huge_field", "never closed"), ("semicolons", "semicolons"),
    ("extra_field", "fields where the header has"), ("no_column", "no 'instance_id' column"),
    ("two_skus", "under two SKUs"),
])
def test_a_bad_meta_csv_is_one_line_naming_file_and_line(fake_release, monkeypatch, case, needle):
    meta = fake_release / "meta.csv"
    text = meta.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    if case == "utf16":
        meta.write_text(text, encoding="utf-16")
    elif case == "gbk":
        meta.write_bytes(text.replace("（", "(").replace("）", ")").encode("gbk"))
    elif case == "huge_field":
        meta.write_text(text + '"all/train/x/' + "y" * 200_000 + "\n", encoding="utf-8")
    elif case == "semicolons":
        meta.write_text(text.replace(",", ";"), encoding="utf-8")
    elif case == "extra_field":
        meta.write_text("\n".join(lines[:3] + [lines[3] + ",extra"] + lines[4:]) + "\n", encoding="utf-8")
    elif case == "no_column":
        meta.write_text(text.replace("instance_id", "sku_name"), encoding="utf-8")
    else:
        path = lines[1].split(",")[0]
        meta.write_text(text + f"{path},{SKUS[3]},shelf\n", encoding="utf-8")
    _no_decoding(monkeypatch)
    with pytest.raises(DataError, match=needle) as info:
        scan_rp2k(fake_release)
    assert str(meta) in str(info.value) and "\n" not in str(info.value)
    if case in ("extra_field", "two_skus"):
        assert "line" in str(info.value)
    _one_line_error(_run("data", "inspect", fake_release), 1, needle)


@pytest.mark.parametrize("case, needle", [
    ("gbk", "GBK"), ("tabs", "tabs"), ("extra_field", "line 3: 4 fields"), ("conflict", "different attributes"),
])
def test_a_bad_attributes_csv_is_refused_before_decoding(fake_release, monkeypatch, case, needle):
    table = fake_release / "attributes.csv"
    rows = ["sku,product_type,shape", f"{SKUS[0]},beers,can", f"{SKUS[1]},seasonings,bottle"]
    if case == "gbk":
        table.write_bytes("\n".join(rows).replace("（", "(").replace("）", ")").encode("gbk"))
    elif case == "tabs":
        table.write_text("\n".join(r.replace(",", "\t") for r in rows), encoding="utf-8")
    elif case == "extra_field":
        table.write_text("\n".join(rows[:2] + [rows[2] + ",oops"]), encoding="utf-8")
    else:
        table.write_text("\n".join(rows + [f"{SKUS[0]},dairies,can"]), encoding="utf-8")
    _no_decoding(monkeypatch)
    with pytest.raises(DataError, match=needle):
        scan_rp2k(fake_release)


def test_identical_duplicate_attribute_rows_are_accepted(fake_release):
    (fake_release / "attributes.csv").write_text(f"sku,product_type\n{SKUS[0]},beers\n{SKUS[0]},beers\n",
                                                 encoding="utf-8")
    assert scan_rp2k(fake_release).attributes[SKUS[0]] == {"product_type": "beers"}


def test_explicit_attributes_file_is_checked_before_the_scan(tiny_synth, tmp_path, monkeypatch):
    bad = tmp_path / "attrs.csv"
    bad.write_text("sku;product_type\nx;y\n", encoding="utf-8")
    import advrp2k.jobs.job as job_mod

    monkeypatch.setattr(job_mod, "scan_rp2k", lambda *a, **k: pytest.fail("scanned before --attributes was read"))
    result = _run("eval", "--data", tiny_synth, "--attributes", bad, "--leaderboard", tmp_path / "lb")
    _one_line_error(result, 1, "semicolons", str(bad))


# --- output paths checked before work -------------------------------------------------------

def test_export_to_a_folder_is_refused_in_one_line(tmp_path):
    lb = shutil.copytree(REPO / "leaderboard" / "entries", tmp_path / "lb" / "entries").parent
    result = _run("export", lb, "--out", tmp_path)
    _one_line_error(result, 74, "is a folder")


def test_data_synth_refuses_a_non_empty_folder_before_generating(tmp_path, monkeypatch):
    import advrp2k.data.synth_scale as scale

    monkeypatch.setattr(scale, "generate_scaled", lambda *a, **k: pytest.fail("generated before refusing"))
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _one_line_error(_run("data", "synth", out, "--skus", 3, "--images", 6, "--size", 16), 2, "not empty")
    assert (out / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    _one_line_error(_run("data", "synth", tmp_path / "file", "--skus", 3, "--images", 6, "--size", 16), 2, "is a file")


# --- exports safe to open -------------------------------------------------------------------

def test_csv_export_neutralises_formulas(tmp_path):
    lb = shutil.copytree(REPO / "leaderboard" / "entries", tmp_path / "lb" / "entries").parent
    entry_path = next(lb.rglob("entries/**/*.json"))
    entry = json.loads(entry_path.read_text(encoding="utf-8"))
    entry["name"] = '=HYPERLINK("https://example.org","click")'
    entry_path.write_text(json.dumps(entry), encoding="utf-8")
    result = _run("export", lb, "--out", tmp_path / "board.csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "board.csv").open(encoding="utf-8")))
    names = {(r["dataset"], r["model_id"]): r["name"] for r in rows}  # one model id can be on several boards
    assert names[(entry["dataset"], entry["model_id"])] == "'" + entry["name"]
    assert all(not v.startswith(("=", "+", "@")) for r in rows for v in r.values())
    assert any(r["clean_acc"] and float(r["clean_acc"]) > 0 for r in rows)  # numbers stay numbers


def test_neutralize_formulas_covers_every_trigger_and_leaves_numbers():
    import pandas as pd

    from advrp2k.board.export import neutralize_formulas

    table = pd.DataFrame({"name": ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "fine", None], "acc": [-0.5] * 8})
    safe = neutralize_formulas(table)
    assert safe["name"].tolist()[:6] == ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx"]
    assert safe["name"][6] == "fine" and pd.isna(safe["name"][7]) and safe["acc"].tolist() == [-0.5] * 8


def test_a_missing_strict_decoder_is_one_clear_error(fake_release, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # as if it were not installed
    with pytest.raises(DataError, match="pip install 'simplejpeg"):
        scan_rp2k(fake_release)
