"""Analyses over per-example results: the table, the long tail, severity, curves, compare, export."""
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from advrp2k.analysis.analyses import compare, curve, intervals, long_tail, severity
from advrp2k.cli import cli
from advrp2k.analysis.results import examples, frame

FAST = ["--epochs", "1", "--image-size", "16"]


def _saved(labels, clean, stages, classes, counts, attrs=None):
    return {"header": {}, "complete": True, "clean_correct": clean, "stages": stages, "counts": {},
            "context": {"labels": labels, "classes": classes, "train_counts": counts, "attributes": attrs or {}}}


# A tiny attribute tree: brand A has a product line (A-1, A-2: same type and shape) and A-3 (another
# type); brand B has B-1 (same type as A-1) and C-1 is another brand of another type.
ATTRS = {"A-1": {"brand": "A", "product_type": "beer", "shape": "can", "size": "250ml", "flavour": "x"},
         "A-2": {"brand": "A", "product_type": "beer", "shape": "can", "size": "500ml", "flavour": "x"},
         "A-3": {"brand": "A", "product_type": "milk", "shape": "box", "size": "250ml", "flavour": "x"},
         "B-1": {"brand": "B", "product_type": "beer", "shape": "can", "size": "250ml", "flavour": "y"},
         "C-1": {"brand": "C", "product_type": "tobacco", "shape": "pack", "size": "1", "flavour": "z"}}
CLASSES = sorted(ATTRS)  # B-1, C-1


def _tree_table():
    # 6 examples of A-1 (label 0): one misclassified clean, 4 fooled at 4/255 into, B-1 and C-1,
    # one robust at both eps; example 6 (C-1) fooled at 8/255 only, into A-1.
    labels = [0, 0, 0, 0, 0, 0, 4]
    clean = [False, True, True, True, True, True, True]
    stages = {"0:pgd@4/255": {"done": [1, 2, 3, 4, 5, 6], "fooled": [1, 2, 3, 4], "adv_class": [1, 2, 3, 4]},
              "1:pgd@8/255": {"done": [5, 6], "fooled": [6], "adv_class": [0]}}
    return frame(_saved(labels, clean, stages, CLASSES, [150, 50, 5, 30, 10], ATTRS))


def test_per_example_table_columns():
    df = _tree_table()
    assert list(df["sku"]) == ["A-1"] * 6 + ["C-1"]
    assert list(df["robust@4/255"]) == [False, False, False, False, False, True, True]
    assert list(df["robust@8/255"]) == [False] * 5 + [True, False]
    missing_as_none = [v if isinstance(v, str) else None for v in df["fooled_at"]]  # pandas shows missing as NaN
    assert missing_as_none == [None, "4/255", "4/255", "4/255", "4/255", None, "8/255"]
    assert list(df["adv_sku"][1:5]) == ["A-2", "A-3", "B-1", "C-1"] and df["adv_class"][5] == -1
    largest = list(df["largest_robust_eps"])
    assert np.isnan(largest[0]) and largest[1] == 0.0 and largest[5] == pytest.approx(8 / 255)
    assert largest[6] == pytest.approx(4 / 255)
    assert list(df["brand"]) == ["A"] * 6 + ["C"] and list(df["train_count"]) == [150] * 6 + [10]


def test_severity_levels_on_a_tiny_attribute_tree():
    sev = severity(_tree_table(), "8/255", ATTRS)
    # A-1 -> A-2 sibling (1), -> A-3 same brand (2), -> B-1 same type (3), -> C-1 another type (4); C-1 -> A-1 (4)
    assert sev["histogram"] == [1, 1, 1, 2] and sev["n_fooled"] == 5
    assert sev["mean_level"] == pytest.approx((1 + 2 + 3 + 4 + 4) / 5)
    assert sev["flips"]["brand"] == pytest.approx(3 / 5) and sev["flips"]["size"] == pytest.approx(3 / 5)  # 500ml, "1", 250ml
    assert {a["sku"]: a["n"] for a in sev["attractors"]} == {"A-2": 1, "A-3": 1, "B-1": 1, "C-1": 1, "A-1": 1}
    assert sum(a["share"] for a in sev["attractors"]) == pytest.approx(1.0)
    at4 = severity(_tree_table(), "4/255", ATTRS)
    assert at4["histogram"] == [1, 1, 1, 1]  # C-1 is still robust at 4/255


def test_severity_degrades_gracefully_without_attributes():
    sev = severity(_tree_table(), "8/255", {})
    assert "histogram" not in sev and sev["attractors"] and "no attribute table" in sev["skipped"][0]
    partial = severity(_tree_table(), "8/255", {k: {"shape": v["shape"]} for k, v in ATTRS.items()})
    assert "histogram" not in partial and any("brand and product_type" in s for s in partial["skipped"])
    assert set(partial["flips"]) == {"shape"}


def test_long_tail_bins_by_hand():
    lt = long_tail(_tree_table(), "8/255")
    head, body, tail = lt["bins"]
    assert (head["min_train"], head["max_train"], body["min_train"], body["max_train"]) == (100, None, 21, 99)
    assert head["n"] == 6 and head["robust_acc"] == pytest.approx(1 / 6) and head["n_skus"] == 1
    assert body["n"] == 0 and body["robust_acc"] is None
    assert tail["n"] == 1 and tail["robust_acc"] == 0.0  # C-1 has 10 training images
    assert lt["balanced_robust_acc"] == pytest.approx((1 / 6 + 0) / 2)
    assert lt["worst_sku"]["sku"] == "C-1" and lt["bottom10_n_skus"] == 1 and lt["bottom10_mean"] == 0.0
    assert lt["spearman_train_count_vs_robust"] == pytest.approx(1.0)
    assert lt["fig7"] == [{"first": 0, "median_train": 80.0, "clean_acc": pytest.approx((1 + 5 / 6) / 2),
                           "robust_acc": pytest.approx(1 / 12)}]


def test_curve_and_intervals_of_an_entry():
    entry = {"clean_acc": 0.8, "n_examples": 10, "robust_acc": {"8/255": 0.1, "4/255": 0.5, "2/255": 0.6}}
    c = curve(entry)
    assert c["labels"] == ["0", "2/255", "4/255", "8/255"] and c["envelope"] == [0.8, 0.6, 0.5, 0.1]
    assert c["half_clean_eps"] == pytest.approx(4 / 255 + 0.1 / 0.4 * 4 / 255)
    assert intervals(entry)["clean_acc"] == pytest.approx([0.4902, 0.9433], abs=1e-4)


def test_compare_counts_discordant_pairs():
    a, b = _tree_table(), _tree_table()
    b.loc[5, "robust@8/255"] = False
    b.loc[2, "clean_correct"] = False
    rows = {r["eps"]: r for r in compare(a, b)}
    assert rows["8/255"]["a_only"] == 1 and rows["8/255"]["b_only"] == 0 and rows["8/255"]["p_mcnemar"] == 1.0
    assert rows["8/255"]["diff"] == pytest.approx(1 / 7)
    assert rows["clean"]["a_only"] == 1
    with pytest.raises(ValueError):
        compare(a, b.iloc[:3])


@pytest.fixture(scope="module")
def two_entries(tiny_synth, tmp_path_factory):
    """On the tiny synthetic set: a standard and a Madry 8/255 model under the ranking suite
    (PGD-20 + AutoAttack), and a Madry 4/255 model with --curve (PGD only: shown, not ranked)."""
    lb = tmp_path_factory.mktemp("lb")
    common = ["--dataset", "rp2k_synth", "--data", str(tiny_synth), *FAST, "--leaderboard", str(lb)]
    for args in (["--defense", "standard", "--attacks", "pgd,autoattack"],
                 ["--defense", "madry", "--eps", "8/255", "--attacks", "pgd,autoattack"],
                 ["--defense", "madry", "--eps", "4/255", "--curve", "--no-escalate"]):
        result = CliRunner().invoke(cli, ["eval", *args, *common], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    folder = lb / "entries" / "rp2k_synth" / "linf"
    return lb, folder / "Standard_smallcnn.json", folder / "Madry2018Towards_smallcnn_eps8-255.json", result.output


def test_eval_entry_carries_intervals_curve_and_analyses(two_entries):
    lb, _, _, printed = two_entries
    madry = lb / "entries" / "rp2k_synth" / "linf" / "Madry2018Towards_smallcnn_eps4-255.json"
    entry = json.loads(madry.read_text())
    assert len(entry["robust_acc"]) == 8 and entry["curve"]["labels"][-1] == "16/255"
    lo, hi = entry["ci95"]["robust_acc"]["8/255"]
    assert lo <= entry["robust_acc"]["8/255"] <= hi
    assert set(entry["analysis"]) == {"eps", "long_tail", "severity"} and entry["analysis"]["eps"] == "8/255"
    assert "histogram" in entry["analysis"]["severity"]  # the synthetic set carries attributes
    for groups in entry["per_group"].values():
        assert all("ci95" in g for g in groups.values())
    assert "95 % interval" in printed and "long tail @ 8/255" in printed and "curve: half of clean" in printed
    df = examples(madry)
    assert isinstance(df, pd.DataFrame) and len(df) == entry["n_examples"]
    assert df["clean_correct"].mean() == pytest.approx(entry["clean_acc"])
    assert df["robust@8/255"].mean() == pytest.approx(entry["robust_acc"]["8/255"])
    fooled = df[df["clean_correct"] & ~df["robust@16/255"]]
    assert (fooled["adv_class"] >= 0).all() and (fooled["adv_class"] != fooled["label"]).all()


def test_compare_command(two_entries):
    lb, std, madry, _ = two_entries
    result = CliRunner().invoke(cli, ["compare", str(madry), str(std)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "McNemar p" in result.output and "8/255" in result.output and "synthetic" in result.output
    data = json.loads(CliRunner().invoke(cli, ["compare", str(madry), str(std), "--json"]).output)
    row = {r["eps"]: r for r in data["rows"]}["8/255"]
    a, b = examples(madry)["robust@8/255"], examples(std)["robust@8/255"]
    assert row["a_only"] == int((a & ~b).sum()) and row["b_only"] == int((~a & b).sum())
    assert row["diff_ci95"][0] <= row["diff"] <= row["diff_ci95"][1]


def test_compare_refuses_different_test_sets(two_entries, tmp_path):
    lb, std, madry, _ = two_entries
    other = json.loads(std.read_text())
    other["data"]["fingerprint"] = "0" * 64
    path = tmp_path / "entries" / "rp2k_synth" / "linf" / "Standard_smallcnn.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(other))
    result = CliRunner().invoke(cli, ["compare", str(madry), str(path)])
    assert result.exit_code == 2 and "not evaluated on the same test set" in result.output


def test_compare_refuses_entries_of_two_threat_models(two_entries, tmp_path):
    lb, std, madry, _ = two_entries
    other = json.loads(std.read_text())
    other["threat_model"] = "l2"
    path = tmp_path / "entries" / "rp2k_synth" / "l2" / "Standard_smallcnn.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(other))
    result = CliRunner().invoke(cli, ["compare", str(madry), str(path)])
    assert result.exit_code == 2 and "linf entry" in result.output and "l2 entry" in result.output


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_ranked_table(two_entries, fmt, tmp_path):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    lb = two_entries[0]
    out = tmp_path / f"board.{fmt}"
    result = CliRunner().invoke(cli, ["export", str(lb), "--format", fmt, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = {"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[fmt](out)
    ranked = table[table["rank"].notna()]
    assert list(ranked["rank"]) == [1, 2]
    assert set(ranked["model_id"]) == {"Standard_smallcnn", "Madry2018Towards_smallcnn_eps8-255"}
    assert list(table[table["rank"].isna()]["model_id"]) == ["Madry2018Towards_smallcnn_eps4-255"]  # PGD only
    assert (table["robust_acc@8/255_ci95_low"] <= table["robust_acc@8/255"]).all()
    assert ranked["rank_ci95_low"].notna().all() and ranked["pgd_acc@8/255"].notna().all()


def test_export_parquet_without_engine_is_a_clear_error(two_entries, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m in ("pyarrow", "fastparquet") else real(m, *a))
    result = CliRunner().invoke(cli, ["export", str(two_entries[0]), "--format", "parquet", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "pip install pyarrow" in result.output


def test_curve_conflicts_with_attack_eps(tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--defense", "standard", "--curve", "--attack-eps", "8/255"])
    assert result.exit_code == 2 and "leave out --attack-eps" in result.output


@pytest.mark.browser
def test_analysis_card_and_ranking_marks_in_chromium(two_entries, tmp_path):
    from selenium.webdriver.common.by import By

    from advrp2k.board.site import build_site
    from test_site import ARTIFACTS, _driver

    lb = two_entries[0]
    report = build_site(lb, tmp_path / "site")
    assert report["entries"] == 3 and report["problems"] == []
    driver = _driver()
    try:
        driver.get((tmp_path / "site" / "index.html").as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "#table-rp2k_synth-linf tbody tr")
        first = rows[0].find_elements(By.TAG_NAME, "td")
        assert "[" in first[4].text and "]" in first[4].text  # clean accuracy with its interval
        assert first[1].text in ("\u2260", "\u2248")  # significance mark towards the next entry
        title = first[1].find_element(By.TAG_NAME, "span").get_attribute("title")
        assert "Holm-corrected p" in title
        assert first[0].find_elements(By.CSS_SELECTOR, "small.rank-ci")  # bootstrap rank interval
        driver.find_element(By.CSS_SELECTOR, "tr[data-model-id='Madry2018Towards_smallcnn_eps4-255'] a.card-link").click()
        assert driver.find_element(By.CSS_SELECTOR, "#curve svg polygon.band").is_displayed()
        assert len(driver.find_elements(By.CSS_SELECTOR, "#curve svg circle")) == 9  # clean + 8 eps
        assert len(driver.find_elements(By.CSS_SELECTOR, "#long-tail table tbody tr")) == 3
        assert driver.find_elements(By.CSS_SELECTOR, "#long-tail svg polyline")
        assert driver.find_elements(By.CSS_SELECTOR, "#severity svg rect.bar")
        assert driver.find_elements(By.CSS_SELECTOR, "#severity table.attractors tbody tr")
        assert [m for m in driver.get_log("browser") if m["level"] == "SEVERE"] == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.set_window_size(1200, 2600)
        driver.save_screenshot(str(ARTIFACTS / "card.png"))
    finally:
        driver.quit()


def test_export_keeps_one_threat_model_apart(two_entries, tmp_path):
    lb = two_entries[0]
    out = tmp_path / "linf.csv"
    result = CliRunner().invoke(cli, ["export", str(lb), "--threat", "linf", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert set(table["threat_model"]) == {"linf"} and len(table) == 3 and "robust_acc@8/255" in table.columns
    none = CliRunner().invoke(cli, ["export", str(lb), "--threat", "patch", "--out", str(tmp_path / "p.csv")])
    assert none.exit_code == 0 and "(0 entries" in none.output
    bad = CliRunner().invoke(cli, ["export", str(lb), "--threat", "stickers"])
    assert bad.exit_code == 2 and "stickers" in bad.output
