"""A real report in headless Chromium (selenium): the sections and images show, the table sorts (so the
CSP admits our inline script), nothing is blocked, and no request leaves the page (DevTools Network
events: only the file itself and data: URLs).

Set DRIFTBENCH_SCREENSHOTS=DIR to keep the screenshots for a human look."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.realruns import adversarial_run

pytestmark = pytest.mark.browser

CHROME = next(
    (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None
)
DRIVER = shutil.which("chromedriver")
SECTIONS = (
    "leaderboard",
    "scatter",
    "curves",
    "survival",
    "clips",
    "filmstrips",
    "worst",
    "skipped",
    "glossary",
    "config",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The adversarial run's report (without ../shared: made on embedded synthetic clips)."""
    from driftbench.report import render_runs

    run = adversarial_run(tmp_path_factory)
    return render_runs([run], tmp_path_factory.mktemp("browser-report"))


@pytest.fixture(scope="module")
def browser():
    if CHROME is None or DRIVER is None:
        pytest.skip("headless Chromium not installed -- fix: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROME
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1300,1600",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def _requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def test_report_renders_offline_in_chromium(report: Path, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get_log("performance")  # drop anything logged before the page
    browser.get(report.as_uri())
    browser.implicitly_wait(5)
    for section in SECTIONS:
        el = browser.find_element(By.ID, section)
        assert el.is_displayed(), section
    # every image decoded (all are data: URIs; a blocked or broken one has naturalWidth 0)
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.src.slice(0, 11), i.complete && i.naturalWidth > 0])")
    assert len(images) > 20
    assert all(src.startswith("data:image/") and ok for src, ok in images), images[:3]
    # every chart (report.charts=browser) is drawn by uPlot from the page's data: one canvas per panel, inked
    specs = json.loads(browser.find_element(By.ID, "chart-data").get_attribute("textContent"))
    charts = browser.execute_script("""
        return Array.from(document.querySelectorAll("div.chart[data-chart]")).map(function (el) {
          return [Number(el.getAttribute("data-chart")), Array.from(el.querySelectorAll("canvas")).map(
            function (c) {
              var d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data, ink = 0;
              for (var i = 3; i < d.length; i += 4) { if (d[i] > 0) { ink++; } }
              return [c.width, c.height, ink];
            })];
        });""")
    assert sorted(i for i, _ in charts) == list(range(len(specs))) and len(specs) >= 4
    for i, canvases in charts:
        spec = specs[i]
        assert len(canvases) == (len(spec["panels"]) if spec["kind"] == "group" else 1), spec.get("title")
        assert all(w > 200 and h > 50 and ink > 1000 for w, h, ink in canvases), (spec.get("title"), canvases)
    # hovering a curve reads its values out in the legend
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    over = browser.find_element(By.CSS_SELECTOR, "#curves div.chart .u-over")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", over)

    def read_out(driver) -> list[str] | None:
        # uPlot re-reads the plot's position on the scroll event, which may come after a first move
        ActionChains(driver).move_to_element_with_offset(over, 5, 0).move_to_element(over).perform()
        cells = driver.find_elements(By.CSS_SELECTOR, "#curves div.chart .u-legend .u-value")
        values = [v.text for v in cells if v.is_displayed()]
        return values if any(v not in ("", "--") for v in values) else None

    assert WebDriverWait(browser, 5, poll_frequency=0.2).until(read_out)
    # the leaderboard shows the flagged adversarial rows with their reasons
    board = browser.find_element(By.ID, "leaderboard-table").text
    assert "freeze" in board and "not ranked: expressivity retained" in board
    shots = [tmp_path / "top.png", tmp_path / "worst.png"]
    browser.save_screenshot(str(shots[0]))
    browser.find_element(By.ID, "worst").screenshot(str(shots[1]))
    # the sorter runs (CSP hash admits it): clicking "clip" orders the rows, twice reverses them
    table = browser.find_element(By.ID, "clips-table")
    header = table.find_element(By.CSS_SELECTOR, "thead th")

    def first_column() -> list[str]:
        return [
            r.find_elements(By.TAG_NAME, "td")[0].text
            for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]

    header.click()
    asc = first_column()
    assert asc == sorted(asc) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert first_column() == sorted(asc, reverse=True)
    # no request left the page, and nothing was blocked or failed
    urls = _requests(browser)
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), [
        u[:60] for u in urls if not u.startswith(("file:", "data:"))
    ]
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe
    keep = os.environ.get("DRIFTBENCH_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for s in shots:
            shutil.copy(s, Path(keep) / s.name)
    assert all(s.stat().st_size > 10_000 for s in shots)
