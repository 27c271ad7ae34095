"""A full disk and read-only folders, for real: small tmpfs mounts (root only; skipped with the reason
elsewhere, failed instead under ``ZEGCLIP_REQUIRE_MOUNT=1``)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from scenarios import Run, train

import zegclip
from zegclip.common import atomic
from zegclip.common.errors import WriteError
from zegclip.engine import run_folder

# a short run: checkpoints at steps 2 and 4 (nothing else big is written before step 4)
EARLY = ["trainer.max_steps=8", "checkpoint_every_n_steps=2", "trainer.val_check_interval=8"]


def fill(folder: Path, leave: int = 0) -> None:
    """Fill ``folder``'s filesystem up to ``leave`` free bytes."""
    free = atomic.free_space(folder) or 0
    (folder / "filler").write_bytes(b"\0" * max(free - leave, 0))


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_a_full_disk_fails_the_second_checkpoint_in_one_line_and_keeps_the_first(
    tmpfs: Callable[..., Path], one_step: Run
) -> None:
    checkpoint_size = one_step.last.stat().st_size  # the same at every step
    disk = tmpfs("disk", checkpoint_size * 3 // 2)  # room for one checkpoint, not for two
    run = train(disk / "run", *EARLY)
    assert run.returncode == 1, run.output[-3000:]
    last = disk / "run" / "checkpoints" / "last.ckpt"
    lines = [line for line in run.output.splitlines() if "Error" in line]
    assert len(lines) == 1 and "Traceback" not in run.output, run.output[-3000:]
    match = re.fullmatch(
        rf"CheckpointWriteError: step 4: could not write checkpoint {re.escape(str(last))}: No space left on "
        rf"device; it needs (\d+\.\d) MB, (\d+\.\d) MB free on {re.escape(str(disk))}; free some space or "
        rf"write to another disk; last good checkpoint: {re.escape(str(last))} \(step 2\), resume with the "
        rf"same command plus ckpt_path={re.escape(str(last))}",
        lines[0],
    )
    assert match, lines[0]
    assert float(match.group(1)) == round(checkpoint_size / 1e6, 1)  # the size it needed, measured
    assert float(match.group(2)) < float(match.group(1))
    # the first checkpoint survived whole, loads, and no temporary file fills the disk
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 2
    assert zegclip.load(str(last)).metadata["global_step"] == 2
    assert temporaries(disk) == []
    status = json.loads((disk / "run" / "run.json").read_text())
    assert status["status"] == "failed" and status["error"] == lines[0]
    assert status["last_checkpoint"] == str(last)


def test_a_read_only_checkpoint_folder_fails_at_start_in_one_line(
    tmp_path: Path, read_only_folder: Callable[[str], Path]
) -> None:
    folder = tmp_path / "run"
    checkpoints = read_only_folder("run/checkpoints")
    run = train(folder, *EARLY)
    assert run.returncode == 1, run.output[-3000:]
    assert re.search(
        rf"^CheckpointWriteError: cannot write checkpoints into {re.escape(str(checkpoints))}: "
        r"(Read-only file system|Permission denied)$",
        run.output,
        re.M,
    ), run.output[-3000:]
    assert "Traceback" not in run.output
    assert not list((folder / "csv").rglob("metrics.csv"))  # not one step was trained
    assert json.loads((folder / "run.json").read_text())["status"] == "failed"


# -- the atomic-write helper on a real full / read-only filesystem -------------------------------


def test_a_write_that_does_not_fit_keeps_the_old_file_and_says_what_it_needed(
    tmpfs: Callable[..., Path],
) -> None:
    disk = tmpfs("disk", 1 << 20)
    path = disk / "metrics.json"
    atomic.write_text(path, "old")
    fill(disk, leave=64 * 1024)
    with pytest.raises(WriteError) as info:
        atomic.write_file(path, b"x" * 200_000, what="metrics")
    message = str(info.value)
    assert message.startswith(f"could not write metrics {path}: No space left on device; it needs 200.0 KB, ")
    assert f"free on {disk}; free some space or write to another disk" in message
    assert path.read_text() == "old" and temporaries(disk) == []
    # a torch checkpoint: torch's own error ("unexpected pos") is traced back to the full disk
    with pytest.raises(
        WriteError, match=r"could not write checkpoint .*: No space left on device; it needs 4\.\d MB"
    ):
        atomic.write_file(
            disk / "last.ckpt", lambda f: torch.save(torch.zeros(1_000_000), f), what="checkpoint"
        )
    assert not (disk / "last.ckpt").exists() and temporaries(disk) == []


def test_a_write_into_a_read_only_folder_names_the_file(read_only_folder: Callable[[str], Path]) -> None:
    folder = read_only_folder("ro")
    with pytest.raises(
        WriteError,
        match=rf"could not write run record {re.escape(str(folder))}/run.json: "
        r"(Read-only file system|Permission denied); choose a folder this process can write",
    ):
        atomic.write_text(folder / "run.json", "{}", what="run record")


def test_a_failure_while_recording_a_failure_never_hides_the_first_error(
    tmpfs: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmpfs("disk", 1 << 20)
    folder = run_folder.claim(disk / "run", "train")
    fill(disk)
    folder.finish("failed", error="CheckpointWriteError: the first error")  # does not raise
    assert "could not record status 'failed'" in capsys.readouterr().err
    with pytest.raises(WriteError, match="could not write run record"):
        folder.finish("finished")  # a finished run whose record is lost is itself a failure
    assert json.loads((disk / "run" / "run.json").read_text())["status"] == "running"  # intact


def test_writers_of_one_file_never_share_a_temporary_file(tmp_path: Path) -> None:
    """Threads (and so processes) writing the same file at once: every rename brings a complete file."""
    path = tmp_path / "cache.json"
    payloads = [json.dumps({"writer": i, "data": "x" * 100_000}) for i in range(8)]
    errors: list[BaseException] = []

    def writer(text: str) -> None:
        try:
            for _ in range(20):
                atomic.write_text(path, text, fsync=False)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    seen = set()
    while any(t.is_alive() for t in threads):
        if path.exists():
            seen.add(path.read_text())  # a reader never sees half a file
    for t in threads:
        t.join()
    assert errors == []
    assert seen <= set(payloads) and path.read_text() in payloads
    assert temporaries(tmp_path) == []
