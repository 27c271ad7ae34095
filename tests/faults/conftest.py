"""Fixtures of the fault-injection suite: one uninterrupted reference run shared by all tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import Run, train  # noqa: E402


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The same short shapes run, never interrupted: what every resumed run must end with."""
    run = train(tmp_path_factory.mktemp("reference") / "run")
    assert run.returncode == 0, run.output[-3000:]
    return run
