"""The static site: built from entries, then driven in real headless Chromium (Debian's chromium
and chromedriver through Selenium). Skipped with a reason when no browser is installed; CI's
.ci/run installs one."""
import json
import os
import shutil
from pathlib import Path

import pytest

from advrp2k.board.entries import write_entry
from advrp2k.board.site import accuracy_svg, build_site
from test_leaderboard import good_entry

ARTIFACTS = Path(os.environ.get("ADVRP2K_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))
XSS = "<script>alert(1)</script>"


RANKING_ATTACKS = [{"name": n, "eps_label": e, **extra} for e in ("4/255", "8/255")
                   for n, extra in (("pgd", {"steps": 20, "loss": "ce"}), ("autoattack", {"version": "standard", "apgd_steps": 100, "square_queries": 5000}))]


def _entries():
    a = good_entry(model_id="Standard_smallcnn", clean_acc=0.9521, robust_acc={"4/255": 0.0936, "8/255": 0.0},
                   date="2026-11-27", attacks=RANKING_ATTACKS)
    b = good_entry(model_id="Madry2018Towards_smallcnn_eps8-255", defense="madry", clean_acc=0.6438,
                   robust_acc={"4/255": 0.5753, "8/255": 0.4977}, date="2026-11-27", attacks=RANKING_ATTACKS,
                   per_group={"shape": {"can": {"n": 5, "clean_acc": 0.8, "robust_acc": {"4/255": 0.6, "8/255": 0.4}}}})
    c = good_entry(model_id="Evil_entry", name=XSS, authors=XSS, link="https://example.org/x",
                   footnote='"><img src=x onerror=alert(2)>', clean_acc=0.5, robust_acc={"4/255": 0.3, "8/255": 0.2},
                   flags=[{"check": "usable gradients", "detail": "zero for 80% of examples"}], unreliable=True)
    d = good_entry(model_id="Standard_resnet34", dataset="rp2k", synthetic=False, clean_acc=0.93,
                   robust_acc={"4/255": 0.01, "8/255": 0.0})
    return [a, b, c, d]


@pytest.fixture
def site(tmp_path):
    for e in _entries():
        write_entry(tmp_path, e)
    report = build_site(tmp_path)
    assert report["entries"] == 4 and report["problems"] == []
    return tmp_path / "site"


def test_build_writes_aggregate_and_pages(site):
    agg = json.loads((site.parent / "leaderboard.json").read_text())
    assert len(agg["entries"]) == 4 and len(agg["paper_table5"]) == 3
    index = (site / "index.html").read_text()
    assert XSS not in index and "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "<link" not in text and "src=\"http" not in text and "cdn" not in text.lower()  # nothing from the network
    assert 'rel="noopener noreferrer"' in index
    card = (site / "entries" / "rp2k_synth" / "Evil_entry.html").read_text()
    assert "<img src=x" not in card and "&lt;img src=x onerror=alert(2)&gt;" in card


def test_javascript_links_never_reach_the_page(tmp_path):
    entry = good_entry(model_id="Sneaky")
    write_entry(tmp_path, entry)
    path = tmp_path / "entries" / "rp2k_synth" / "linf" / "Sneaky.json"
    raw = json.loads(path.read_text())
    raw["link"] = "javascript:alert(1)"  # hand-edited, invalid: skipped from the site and reported
    path.write_text(json.dumps(raw))
    report = build_site(tmp_path)
    assert report["entries"] == 0 and any("'link'" in p for p in report["problems"])
    assert "javascript:" not in (tmp_path / "site" / "index.html").read_text()


def test_svg_plot_points():
    svg = accuracy_svg(good_entry(clean_acc=1.0, robust_acc={"4/255": 0.5, "8/255": 0.0}, eps={"4/255": 4 / 255, "8/255": 8 / 255}))
    assert svg.count("<circle") == 3 and "4/255: 50.00%" in svg and "8/255: 0.00%" in svg


def _driver():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_bin:
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_bin), options=opts)


@pytest.fixture
def browser():
    driver = _driver()
    yield driver
    driver.quit()


def _rows(browser, table_id):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")


@pytest.mark.browser
def test_site_in_chromium(site, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    browser.get((site / "index.html").as_uri())
    errors = [m for m in browser.get_log("browser") if m["level"] == "SEVERE"]
    assert errors == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "leaderboard.png"))

    synth = _rows(browser, "table-rp2k_synth-linf")
    assert len(synth) == 3  # one row per synthetic entry, no paper rows mixed in
    by_id = {r.get_attribute("data-model-id"): r for r in synth}
    cells = by_id["Standard_smallcnn"].find_elements(By.TAG_NAME, "td")
    assert [c.text.split("\n")[0] for c in cells[4:7]] == ["95.21", "9.36", "0.00"]
    assert cells[9].text == "autoattack+pgd"  # the attack suite behind the numbers
    assert cells[0].text.startswith("2")  # ranked under the ranking suite
    evil = by_id["Evil_entry"].find_elements(By.TAG_NAME, "td")
    assert evil[0].text == "not ranked" and evil[9].text == "pgd"  # PGD alone: shown, not ranked
    assert evil[7].text == "20.00"  # the paper-protocol column (PGD-20)
    assert "PGD-20 and AutoAttack" in browser.find_element(By.ID, "ranking-rule").text
    real = _rows(browser, "table-rp2k-linf")
    assert len(real) == 1 + 3 and sum("paper-reported" in r.text for r in real) == 3

    # the XSS entry shows as text and runs nothing
    assert XSS in by_id["Evil_entry"].text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    assert "evaluation potentially unreliable" in by_id["Evil_entry"].text

    # sorting: click "Clean" once (ascending), twice (descending)
    header = browser.find_elements(By.CSS_SELECTOR, "#table-rp2k_synth-linf th")[4]
    header.click()
    ascending = [r.find_elements(By.TAG_NAME, "td")[4].text.split("\n")[0] for r in _rows(browser, "table-rp2k_synth-linf")]
    assert ascending == ["50.00", "64.38", "95.21"]
    header.click()
    descending = [r.find_elements(By.TAG_NAME, "td")[4].text.split("\n")[0] for r in _rows(browser, "table-rp2k_synth-linf")]
    assert descending == ["95.21", "64.38", "50.00"]

    # filtering by dataset hides the other table
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "filter-dataset")).select_by_value("rp2k")
    assert not browser.find_element(By.ID, "table-rp2k_synth-linf").is_displayed()
    assert browser.find_element(By.ID, "table-rp2k-linf").is_displayed()
    Select(browser.find_element(By.ID, "filter-dataset")).select_by_value("")

    # a card opens with its plot
    browser.find_element(By.CSS_SELECTOR, "tr[data-model-id='Madry2018Towards_smallcnn_eps8-255'] a.card-link").click()
    assert browser.find_element(By.ID, "card-title").text == "Madry2018Towards_smallcnn_eps8-255"
    plot = browser.find_element(By.CSS_SELECTOR, "svg.plot")
    assert plot.is_displayed() and len(plot.find_elements(By.TAG_NAME, "circle")) == 3
    assert [m for m in browser.get_log("browser") if m["level"] == "SEVERE"] == []

    # the XSS card: escaped, no alert, https link with rel=noopener
    browser.get((site / "entries" / "rp2k_synth" / "Evil_entry.html").as_uri())
    assert XSS in browser.find_element(By.ID, "card-title").text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    link = browser.find_element(By.CSS_SELECTOR, "a[href='https://example.org/x']")
    assert link.get_attribute("rel") == "noopener noreferrer"


@pytest.mark.browser
def test_submit_page_renders_the_plugins_guide(site, browser):
    from selenium.webdriver.common.by import By

    browser.get((site / "submit.html").as_uri())
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "register_defense" in text and "advrp2k submit" in text


def test_submit_page_is_rendered_from_the_plugins_page(site):
    """The site's submit page is docs/plugins.md (not a README heading cut out by a pattern)."""
    page = (site / "submit.html").read_text()
    assert "register_defense" in page and "advrp2k submit" in page and "entry-points.advrp2k" in page


@pytest.mark.browser
def test_chinese_sku_names_render_as_glyphs_not_empty_boxes(site, browser):
    """A known SKU name, drawn with the site's own font stack, must not look like the same number
    of characters that no font has (private-use code points, drawn as empty boxes or nothing)."""
    browser.get((site / "index.html").as_uri())
    shot = ("var s = document.createElement('span'); s.id = 'glyphs'; s.style.fontSize = '32px';"
            "s.textContent = arguments[0]; document.querySelector('main').prepend(s);")
    from selenium.webdriver.common.by import By

    browser.execute_script(shot, "青松饮料原味")
    chinese = browser.find_element(By.ID, "glyphs").screenshot_as_png
    missing = []
    for code_point in ("\ue000", "\U00011013"):  # private use; Brahmi (no font here has it)
        browser.execute_script("document.getElementById('glyphs').textContent = arguments[0];", code_point * 6)
        missing.append(browser.find_element(By.ID, "glyphs").screenshot_as_png)
    assert missing[0] == missing[1]  # a missing glyph is the same empty box whatever the character
    assert chinese != missing[0], "Chinese SKU names render as empty boxes: install a CJK font (fonts-noto-cjk)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "glyphs.png").write_bytes(chinese)


@pytest.mark.browser
def test_search_box_filters_rows(site, browser):
    from selenium.webdriver.common.by import By

    browser.get((site / "index.html").as_uri())
    browser.find_element(By.ID, "search").send_keys("madry")
    shown = [r for r in _rows(browser, "table-rp2k_synth-linf") if r.is_displayed()]
    assert [r.get_attribute("data-model-id") for r in shown] == ["Madry2018Towards_smallcnn_eps8-255"]


def test_cards_show_budgets_in_255ths_and_the_command_that_reproduces_them(tmp_path):
    attacks = [{"name": "pgd", "eps": 8 / 255, "eps_label": "8/255", "steps": 20, "step_size": 2.5 * (8 / 255) / 20}]
    entry = good_entry(model_id="Madry2018Towards_smallcnn_eps8-255", defense="madry", train_eps_label="8/255",
                       attacks=attacks, defense_paper={"title": "PGD adversarial training (Madry et al.)",
                                                       "link": "https://arxiv.org/abs/1706.06083", "venue": "ICLR 2018"},
                       defense_config={"eps": 8 / 255, "steps": 3, "step_size": 2.5 * (8 / 255) / 3})
    write_entry(tmp_path, entry)
    build_site(tmp_path)
    card = (tmp_path / "site" / "entries" / entry["dataset"] / f"{entry['model_id']}.html").read_text()
    assert "advrp2k eval --defense madry --eps 8/255" in card
    assert "step_size=1/255" in card and "step_size=6.67/255" in card
    assert "0.0313725" not in card and "0.00392" not in card  # no raw floats
    index = (tmp_path / "site" / "index.html").read_text()
    assert "PGD adversarial training (Madry et al.)" in index and "ICLR 2018" in index
    assert 'href="https://arxiv.org/abs/1706.06083"' in index


_REACH = """
const out = [];
const width = document.documentElement.clientWidth;
if (document.documentElement.scrollWidth > width + 1) out.push("the page scrolls sideways: " + document.documentElement.scrollWidth + " px in " + width);
document.querySelectorAll("table").forEach(function (t, i) {
  let box = t;
  while (box && box !== document.body && getComputedStyle(box).overflowX === "visible") box = box.parentElement;
  if (box && box !== document.body) box.scrollLeft = box.scrollWidth;
  const cells = t.querySelectorAll("tr:first-child > *");
  if (!cells.length) return;
  const right = cells[cells.length - 1].getBoundingClientRect().right;
  if (right > width + 1) out.push("table " + i + ": last column ends at " + Math.round(right) + " px of " + width);
});
return out;
"""


@pytest.mark.browser
@pytest.mark.parametrize("width", [1400, 1024, 390])
def test_every_column_is_reachable_at_every_width(site, browser, width):
    # Chromium's window is at least 500 px wide: a phone's width is emulated (as its device toolbar does)
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})
    pages = [site / "index.html", site / "entries" / "rp2k_synth" / "Madry2018Towards_smallcnn_eps8-255.html"]
    for page in pages:
        browser.get(page.as_uri())
        assert browser.execute_script(_REACH) == [], page.name
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"index-{width}px.png"))
