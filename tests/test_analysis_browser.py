"""report.html in a real headless browser (Debian's chromium, driven through its chromedriver):
it loads with no console error, every image decodes, the headline line is visible in a
1400x900 screenshot without scrolling, and the comparison table fits the window.

chromium and chromium-driver are installed by scripts/setup.sh; without them the test fails
and says so.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.sessions import write_matrix_session

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests/fixtures/results"
WIDTH, HEIGHT = 1400, 900


def analyse(sessions: list[Path], out: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "analysis", *map(str, sessions), "--out", str(out)], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("chromium and chromedriver are needed (Debian packages chromium, chromium-driver): "
                    "run scripts/setup.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: chromium's sandbox refuses to run as root, which the tests are.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        # The page's viewport exactly 1400x900, whatever the window's decorations take.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()


def open_report(driver, out: Path) -> dict:
    """Load report.html; returns what the checks need, measured in the page."""
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get((out / "report.html").as_uri())
    images = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        Promise.all([...document.images].map(img => img.decode().then(
            () => ({ok: true, width: img.naturalWidth, height: img.naturalHeight}),
            error => ({ok: false, error: String(error)})))).then(done);""")
    page = driver.execute_script("""
        const rect = el => { const r = el.getBoundingClientRect();
                             return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
        const first = document.querySelector('tr.headline');
        const comparison = [...document.querySelectorAll('h2')].find(h => h.textContent === 'Comparison');
        const table = comparison.nextElementSibling.querySelector('table');
        return {viewport: [window.innerWidth, window.innerHeight], scrollY: window.scrollY,
                page_width: document.documentElement.scrollWidth,
                headline: first && {text: first.innerText, rect: rect(first),
                                    claim: rect(first.querySelector('.claim'))},
                table_right: rect(table).right,
                details_open: [...document.querySelectorAll('details')].map(d => d.open)};""")
    page["images"] = images
    page["console"] = driver.get_log("browser")
    page["screenshot"] = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L")
    return page


def check_report(page: dict, out: Path) -> None:
    errors = [entry for entry in page["console"] if entry["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"
    pngs = sorted(out.glob("*.png"))
    assert len(page["images"]) == len(pngs) >= 4
    assert all(image["ok"] and image["width"] >= 600 and image["height"] >= 400 for image in page["images"]), \
        page["images"]
    assert page["viewport"] == [WIDTH, HEIGHT] and page["scrollY"] == 0
    # The headline line is on screen without scrolling...
    headline = page["headline"]
    assert headline and "costs" in headline["text"] and "against host" in headline["text"]
    rect = headline["rect"]
    assert rect["top"] >= 0 and rect["bottom"] <= HEIGHT and rect["left"] >= 0 and rect["right"] <= WIDTH, rect
    # ... and drawn there in the screenshot: dark text pixels where the claim is.
    shot = page["screenshot"]
    assert shot.size == (WIDTH, HEIGHT)
    claim = page["headline"]["claim"]
    box = tuple(round(v) for v in (claim["left"], claim["top"], claim["right"], claim["bottom"]))
    pixels = np.asarray(shot.crop(box))
    assert (pixels < 100).mean() > 0.05, "no text where the headline claim is"
    # The comparison table fits the window; the details are collapsed.
    assert page["table_right"] <= WIDTH and page["page_width"] <= WIDTH, (page["table_right"], page["page_width"])
    assert page["details_open"] == [False]


def test_report_of_the_fixtures_in_a_browser(browser, tmp_path):
    out = analyse(sorted(p for p in FIXTURES.iterdir() if p.is_dir()), tmp_path / "out")
    page = open_report(browser, out)
    check_report(page, out)
    assert page["headline"]["text"].startswith("cpf227pu")


def test_report_of_every_network_fits_the_window(browser, tmp_path):
    """A full matrix of every network the results format knows, measured, with long node names."""
    out = analyse([write_matrix_session(tmp_path)], tmp_path / "out")
    page = open_report(browser, out)
    check_report(page, out)
    assert page["headline"]["text"].split("\n")[0].startswith("matrix · iperf2 tcp P10 forward")


def test_a_broken_image_is_caught(browser, tmp_path):
    """The checks can fail: a report whose image does not decode logs and says so."""
    out = analyse([FIXTURES / "20151205-120000-do2015"], tmp_path / "out")
    page_path = out / "report.html"
    page_path.write_text(page_path.read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    page = open_report(browser, out)
    assert not page["images"][0]["ok"]
    with pytest.raises(AssertionError):
        check_report(page, out)
