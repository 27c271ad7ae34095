"""Tests that need something pip cannot install (the golden pack beside the repository, a system
browser): on a user's machine they skip and say what to install; in CI they must run.

``ZEGCLIP_CI=1`` (set by ``.ci/run``) turns each such skip into a failure, so CI always exercises
these paths.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("ZEGCLIP_CI") == "1"


def unavailable(what: str, how: str) -> NoReturn:
    """Skip (outside CI) or fail (``ZEGCLIP_CI=1``): ``what`` is missing, ``how`` says how to get it."""
    message = f"{what} is not available here: {how}"
    if in_ci():
        pytest.fail(f"{message} (ZEGCLIP_CI=1: CI runs every test, none may skip)")
    pytest.skip(message)
