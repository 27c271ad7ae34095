"""Fixtures of the fault-injection suite: one uninterrupted reference run shared by all tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
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


@pytest.fixture(scope="session")
def one_step(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A one-step run of the short recipe, not tested: a real last.ckpt (the same size at every step)."""
    run = train(
        tmp_path_factory.mktemp("one_step") / "run", "trainer.max_steps=1", "test_after_training=false"
    )
    assert run.returncode == 0, run.output[-3000:]
    return run


# -- small and read-only filesystems ---------------------------------------------------------------

REQUIRE_MOUNT = os.environ.get("ZEGCLIP_REQUIRE_MOUNT", "") == "1"
"""Set by CI (.ci/run, as root): a test that cannot mount its filesystem fails instead of skipping."""


def _cannot_mount(reason: str) -> None:
    message = f"needs a small filesystem of its own (mount -t tmpfs, as root or with CAP_SYS_ADMIN): {reason}"
    if REQUIRE_MOUNT:
        pytest.fail(f"{message}; ZEGCLIP_REQUIRE_MOUNT=1 makes this a failure")
    pytest.skip(message)


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``tmpfs(name, size_bytes, read_only=False)`` mounts a tmpfs of that size at ``tmp_path/name``
    (unmounted after the test: its files go with it). Skips, with what it needs, where mounting is
    not allowed (not root)."""
    mounted: list[Path] = []

    def mount(name: str, size: int, read_only: bool = False) -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        if shutil.which("mount") is None:
            _cannot_mount("no mount command on this machine")
        if os.geteuid() != 0:
            _cannot_mount(f"this process is not root (uid {os.geteuid()})")
        options = f"size={int(size)}" + (",ro" if read_only else "")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            _cannot_mount(f"mount failed: {proc.stderr.strip() or proc.returncode}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture()
def read_only_folder(tmp_path: Path, tmpfs: Callable[..., Path]) -> Iterator[Callable[[str], Path]]:
    """``read_only_folder(name)``: a folder no write can go into (a read-only tmpfs as root, whom
    permission bits do not stop; ``chmod 555`` otherwise)."""
    restore: list[Path] = []

    def make(name: str) -> Path:
        if os.geteuid() == 0:
            return tmpfs(name, 1 << 20, read_only=True)
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        restore.append(folder)
        return folder

    yield make
    for folder in restore:
        folder.chmod(0o755)
