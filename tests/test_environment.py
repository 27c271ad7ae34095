"""A fresh machine has only what pip installs: the browser test then skips and says what to install,
and in CI (``ZEGCLIP_CI=1``, set by ``.ci/run``) the same missing browser fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_browser_test(ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ZEGCLIP_CI"}
    env["PATH"] = str(Path(sys.executable).parent)  # no chromium / chromedriver on it
    if ci:
        env["ZEGCLIP_CI"] = "1"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "tests/test_demo_browser.py",
    ]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_without_a_browser_the_test_skips_and_says_what_to_install() -> None:
    proc = run_browser_test(ci=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 skipped" in proc.stdout
    assert "apt-get install -y chromium chromium-driver" in proc.stdout  # the reason, in pytest's summary


def test_in_ci_a_missing_browser_fails() -> None:
    proc = run_browser_test(ci=True)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert (
        "ZEGCLIP_CI=1: CI runs every test" in proc.stdout and "1 error" in proc.stdout
    )  # failed in its fixture
