"""The web demo, driven in headless Chromium: `python -m zegclip.demo` on 127.0.0.1, an uploaded
image and typed class names give the overlay and class shares that `model.predict` gives.

Needs Debian's `chromium` and `chromium-driver`, which pip cannot install: without them the test
skips and says what to install; `.ci/run` installs them and sets ZEGCLIP_CI=1, which makes that skip
a failure. ZEGCLIP_SCREENSHOT=PATH keeps the page's screenshot (docs/demo.png is made that way).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from environment import unavailable
from PIL import Image

import zegclip
from zegclip.data.shapes import ShapesWorld

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1100",
]


def _browser_paths() -> tuple[str, str]:
    browser = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    unavailable(
        f"Chromium and its driver for the web-demo test (chromium: {browser or 'missing'}, chromedriver: "
        f"{driver or 'missing'})",
        "apt-get install -y chromium chromium-driver (.ci/run does)",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    """`python -m zegclip.demo` as a user starts it, on a free local port."""
    _browser_paths()  # no browser: skip (fail in CI) before starting anything
    port = _free_port()
    folder = tmp_path_factory.mktemp("demo")
    log = folder / "demo.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(folder / "gradio"),
    }
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "zegclip.demo", "ckpt_path=shapes", f"--port={port}"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"the demo exited with code {process.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the demo did not answer on {url} within 180 s:\n{log.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture()
def browser():
    binary, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="zegclip_chromium_")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _requested_hosts(driver) -> set[str]:
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.split(":", 1)[0] in ("http", "https", "ws", "wss"):
                hosts.add(url.split("/")[2])
    return hosts


def _type(browser, selector: str, text: str, then: str = "") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = browser.find_element(By.CSS_SELECTOR, selector)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text + then)


_READ_RESULT = """
const table = document.querySelector("#zegclip-shares");
const img = document.querySelector("#zegclip-overlay img");
if (!table || !img) return null;
const rows = [...table.querySelectorAll("tr[data-class]")].map(r => [r.dataset.class, r.dataset.share]);
return {count: Number(table.dataset.count), rows: rows, src: img.src};
"""


def _page_result(
    browser, wait, previous: tuple[dict[str, float], str] | None
) -> tuple[dict[str, float], str]:
    """Click Segment; wait until the page shows a complete share table and an overlay, both new
    (read in one script, so atomically); return the shares and the overlay's URL."""
    from selenium.webdriver.common.by import By

    def result(driver) -> tuple[dict[str, float], str] | None:
        state = driver.execute_script(_READ_RESULT)
        if not state or not state["rows"] or len(state["rows"]) != state["count"]:
            return None
        shares = {name: float(share) for name, share in state["rows"]}
        if previous is not None and (shares == previous[0] or state["src"] == previous[1]):
            return None
        return shares, state["src"]

    browser.find_element(By.CSS_SELECTOR, "#zegclip-run").click()
    return wait.until(result, message="the demo showed no (new) overlay and class-share table")


def _fetch_png(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=30) as response:
        return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


def test_demo_in_a_browser_gives_what_predict_gives(demo_url, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    image, _ = ShapesWorld("compositional", seed=99).sample(138)  # a green square and a red triangle
    upload = tmp_path / "upload.png"
    Image.fromarray(np.repeat(np.repeat(image, 4, 0), 3, 1)).save(upload)  # 256 x 192, not square
    classes = ["blue circle", "green square", "red triangle", "yellow star"]
    torch.set_num_threads(1)
    model = zegclip.load("shapes")

    wait = WebDriverWait(browser, 90)
    browser.get(demo_url)
    file_input = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#zegclip-image input[type=file]"))
    )
    file_input.send_keys(str(upload))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#zegclip-image img")))
    _type(browser, "#zegclip-classes textarea", ", ".join(classes))

    # 1. class names only
    first = _page_result(browser, wait, None)
    shares, overlay_url = first
    expected = model.predict(upload, classes)
    assert shares == pytest.approx(expected.shares(), abs=1e-6)
    assert list(shares) == list(expected.shares())  # largest first, as in the legend
    assert np.array_equal(_fetch_png(overlay_url), np.asarray(expected.overlay()))  # PNG: pixel-exact
    screenshot = Path(os.environ.get("ZEGCLIP_SCREENSHOT") or tmp_path / "demo.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000

    # 2. a seen class and its bias, typed into the page (they change this image's shares)
    _type(browser, "#zegclip-seen textarea", "red triangle")
    _type(browser, "#zegclip-bias input[type=number]", "0.25", then=Keys.TAB)
    shares, overlay_url = _page_result(browser, wait, first)
    expected = model.predict(upload, classes, seen=[2], seen_bias=0.25)
    assert shares == pytest.approx(expected.shares(), abs=1e-6)
    assert np.array_equal(_fetch_png(overlay_url), np.asarray(expected.overlay()))

    hosts = _requested_hosts(browser)
    assert hosts == {demo_url.split("/")[2]}, f"the page requested other hosts: {hosts}"
