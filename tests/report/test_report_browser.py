"""report.html in a real browser: headless Chromium (through selenium + chromedriver) opens
the page; every plot must decode to a drawn image and the console must hold no error."""

from __future__ import annotations

import shutil

import pytest
from report_synth import write_run

from mgrpo.report.build import build_report
from mgrpo.report.plots import PLOT_NAMES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium not installed (Debian: apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install 'mgrpo[browser]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_report_page_loads_every_plot_without_console_errors(tmp_path, browser):
    runs = [
        write_run(tmp_path / "srt", steps=80, preset="srt", rollouts=8, seed=0, collapse=True,
                  eval_results={"benchmarks": {"math500": {"avg@1": 0.42, "n_problems": 5}}}),
        write_run(tmp_path / "mg", steps=80, preset="m-grpo", rollouts=8, seed=0),
    ]
    result = build_report(runs, tmp_path / "report")
    assert set(result.plots) == set(PLOT_NAMES)
    browser.get(result.html.resolve().as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => "
        "({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))"
    )
    assert len(images) == len(PLOT_NAMES)
    for image in images:
        assert image["complete"] and image["w"] >= 400 and image["h"] >= 300, image
    assert browser.execute_script("return document.title")
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []


def test_a_broken_plot_is_caught(tmp_path, browser):
    """The check itself: a page whose image cannot decode fails it (0 natural width + console error)."""
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><title>t</title><img alt="x" src="data:image/png;base64,AAAA">'
                    '<img alt="y" src="missing.png">', encoding="utf-8")
    browser.get(page.resolve().as_uri())
    widths = browser.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert widths == [0, 0]
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert any("missing.png" in entry["message"] for entry in errors), errors
