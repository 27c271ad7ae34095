"""User errors in one line: ``<ErrorType>: <message>``, no traceback, exit code 2, from every program;
failed runs 1, interruptions 128 + signal; ``HYDRA_FULL_ERROR=1`` shows the trace; bugs keep theirs."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from hydra_compose import compose_config
from lightning.fabric.utilities.exceptions import MisconfigurationException
from scenarios import REPO_ROOT, SHORT, environment

from zegclip.common.errors import CheckpointWriteError, ConfigError, RunInterrupted, WriteError
from zegclip.data.errors import DataRootError
from zegclip.engine import cli

# one probe per program (the other train.py probes raise the same way: below, and test_checkpoints.py)
PROBES = [
    (
        "train.py seed=abc",
        ["train.py", *SHORT, "seed=abc"],
        "ConfigError: seed must be an integer (e.g. seed=0), got 'abc'",
    ),
    (
        "eval.py ckpt_path=missing",
        ["eval.py", "ckpt_path={tmp}/missing.ckpt"],
        "CheckpointNotFoundError: Checkpoint not found: '{tmp}/missing.ckpt' (no such file); give a "
        "checkpoint file (a run folder's checkpoints/last.ckpt, an official ZegCLIP "
        ".pth, an exported file) or 'shapes'",
    ),
    (
        "predict.py inputs=missing",
        ["predict.py", "inputs={tmp}/missing.jpg"],
        "InputNotFoundError: inputs: '{tmp}/missing.jpg' is neither a file, a folder nor a glob pattern that "
        "matches files; give an image, a folder of images or a quoted pattern (inputs='photos/*.jpg')",
    ),
    (
        "demo ckpt_path=missing",
        ["-m", "zegclip.demo", "ckpt_path={tmp}/missing.ckpt"],
        "CheckpointNotFoundError: Checkpoint not found: '{tmp}/missing.ckpt' (no such file); give a "
        "checkpoint file (a run folder's checkpoints/last.ckpt, an official ZegCLIP "
        ".pth, an exported file) or 'shapes'",
    ),
    (
        "export missing",
        ["-m", "zegclip.export", "{tmp}/missing.ckpt", "{tmp}/out.pt"],
        "CheckpointNotFoundError: Checkpoint not found: '{tmp}/missing.ckpt' (no such file); give a "
        "checkpoint file (a run folder's checkpoints/last.ckpt, an official ZegCLIP "
        ".pth, an exported file) or 'shapes'",
    ),
]


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    if args[0].endswith(".py"):
        command.append(f"hydra.run.dir={tmp_path / 'run'}")
    return subprocess.run(
        command, cwd=REPO_ROOT, env=environment(**env), capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(("name", "args", "line"), PROBES, ids=[p[0] for p in PROBES])
def test_a_user_error_is_one_line_and_exit_code_2(
    name: str, args: list[str], line: str, tmp_path: Path
) -> None:
    proc = run(args, tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [line.replace("{tmp}", str(tmp_path))], proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "trainer.max_steps=-5",
            r"trainer.max_steps must be an integer > 0 \(iteration-based recipes\), got -5",
        ),
        (
            "trainer.max_steps=2.5",
            r"trainer.max_steps must be an integer > 0 \(iteration-based recipes\), got 2.5",
        ),
        ("seed=1.5", r"seed must be an integer \(e.g. seed=0\), got 1.5"),
        ("test_weights=first", r"test_weights must be 'last' \(the final weights\) or 'best', got 'first'"),
    ],
)
def test_train_config_errors_are_config_errors(override: str, message: str, tmp_path: Path) -> None:
    from zegclip.engine.train import train as run_train

    with pytest.raises(ConfigError, match=f"^{message}$"):
        run_train(compose_config("train", [*SHORT, override], tmp_path / "run"))
    assert not (tmp_path / "run" / "run.json").exists()  # refused before the run folder is claimed


def test_hydra_full_error_shows_the_trace_and_keeps_the_exit_code(tmp_path: Path) -> None:
    proc = run(["train.py", *SHORT, "seed=abc"], tmp_path, HYDRA_FULL_ERROR="1")
    assert proc.returncode == 2
    assert (
        "Traceback (most recent call last)" in proc.stderr and 'zegclip/engine/train.py", line' in proc.stderr
    )
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "ConfigError: seed must be an integer (e.g. seed=0), got 'abc'"
    )


def test_a_bug_keeps_its_traceback(tmp_path: Path) -> None:
    code = "from zegclip.engine import cli\ndef work():\n    return {}['missing']\ncli.run(work)\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=environment(), capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "in work" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "KeyError: 'missing'"


# -- which exception ends how (zegclip.engine.cli.explain) ---------------------------------------------


def raised(make: type[BaseException] | BaseException, during: BaseException | None = None) -> BaseException:
    """The exception as Python leaves it (chained to ``during`` when raised while handling it)."""
    try:
        if during is None:
            raise make
        try:
            raise during
        except BaseException:  # noqa: BLE001
            raise make  # noqa: B904 (chained on purpose: raised while handling ``during``)
    except BaseException as err:  # noqa: BLE001
        return err


def wrapped(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as err:  # noqa: BLE001
            raise InstantiationException("Error in call to target 'SegmentationDataModule'") from err
    except BaseException as err:  # noqa: BLE001
        return err


@pytest.mark.parametrize(
    ("error", "line", "code"),
    [
        (
            ConfigError("seed must be an integer, got 'abc'"),
            "ConfigError: seed must be an integer, got 'abc'",
            2,
        ),
        (wrapped(DataRootError("data root not found: /x")), "DataRootError: data root not found: /x", 2),
        (
            MisconfigurationException("No supported gpu backend found!"),
            "MisconfigurationException: No supported gpu backend found!",
            2,
        ),
        (
            RunInterrupted(15, 12, "/r/last.ckpt"),
            "RunInterrupted: SIGTERM: stopped at step 12, saved to /r/last.ckpt; "
            "resume with the same command plus ckpt_path=/r/last.ckpt",
            143,
        ),
        (RunInterrupted(2, 3, None), "RunInterrupted: SIGINT: stopped at step 3 (nothing to save)", 130),
        (
            CheckpointWriteError("could not write checkpoint /r/last.ckpt: No space left on device"),
            "CheckpointWriteError: could not write checkpoint /r/last.ckpt: No space left on device",
            1,
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/r/csv/metrics.csv"),
            "OSError: [Errno 28] No space left on device: '/r/csv/metrics.csv'",
            1,
        ),
        (KeyboardInterrupt(), "KeyboardInterrupt: stopped (Ctrl+C)", 130),
    ],
)
def test_known_errors_and_their_exit_codes(error: BaseException, line: str, code: int) -> None:
    assert cli.explain(raised(error)) == (line, code)


def test_a_failure_while_stopping_never_hides_the_first_error() -> None:
    first = WriteError("could not write metrics /r/metrics.json: No space left on device")
    later = raised(OSError(errno.EIO, "Input/output error", "/r/csv/metrics.csv"), during=first)
    assert cli.explain(later) == (
        "WriteError: could not write metrics /r/metrics.json: No space left on device (then, while stopping: "
        "OSError: [Errno 5] Input/output error: '/r/csv/metrics.csv')",
        1,
    )


def test_bugs_are_not_explained_away() -> None:
    assert cli.explain(raised(ZeroDivisionError("division by zero"))) is None
    assert cli.explain(raised(ValueError("an internal value"))) is None  # a plain ValueError is no user error
    assert cli.explain(wrapped(TypeError("a bug inside a target"))) is None
    # a user error raised while a bug was being handled: the bug started it, it keeps its traceback
    assert cli.explain(raised(ConfigError("later"), during=ZeroDivisionError("first"))) is None
    assert cli.explain(raised(SystemExit(0))) is None
    with pytest.raises(ZeroDivisionError):
        cli.run(lambda: 1 / 0)
