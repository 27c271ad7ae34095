"""A run folder belongs to exactly one run: ``run.json`` marks it and records how the run ended.

``run.json`` is created exclusively (complete, then hard-linked into place) when a run starts, so two
runs can never write into one folder; it is rewritten atomically when the run ends (``finished``,
``interrupted``, ``failed``), which is what a sweep report reads to list failed jobs. A run that
cannot record its failure (a full disk) says so on stderr and keeps the first error. A SLURM job that was
requeued finds its own ``run.json`` (same job id) and resumes from the folder's ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zegclip.common.atomic import probe_writable, write_text
from zegclip.common.errors import CheckpointWriteError, RunFolderInUseError, WriteError

MARKER = "run.json"


@dataclass
class RunFolder:
    """This process's claim on ``path``; ``requeued`` when it continues its own SLURM job."""

    path: Path
    requeued: bool = False

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.ckpt"

    def finish(self, status: str, **info: Any) -> None:
        """Record how the run ended (``finished``, ``interrupted``, ``failed``) in ``run.json``.

        Raises:
            WriteError: ``run.json`` cannot be written, for ``finished`` / ``running`` only: when
                recording a failure or an interruption, a failed write is reported on stderr and
                never hides the error that ended the run.
        """
        marker = self.path / MARKER
        try:
            record = json.loads(marker.read_text())
        except (OSError, ValueError):
            record = {}
        record.update(status=status, ended=_now(), **info)
        try:
            write_text(marker, json.dumps(record, indent=2, default=str), what="run record")
        except WriteError as err:
            if status in ("finished", "running"):
                raise
            print(f"(could not record status {status!r}: {err})", file=sys.stderr, flush=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def check_writable(folder: Path, what: str = "checkpoints") -> None:
    """Fail at start-up, not at the first checkpoint, if ``folder`` cannot be written."""
    try:
        probe_writable(folder)
    except OSError as err:
        raise CheckpointWriteError(f"cannot write {what} into {folder}: {err.strerror or err}") from err


def claim(path: Path, task: str) -> RunFolder:
    """Mark ``path`` as this run's folder (on the launching process only).

    Raises:
        RunFolderInUseError: the folder already holds another run's ``run.json``.
    """
    marker = path / MARKER
    job = os.environ.get("SLURM_JOB_ID")
    record = {
        "task": task,
        "status": "running",
        "started": _now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": job,
        "command": " ".join(sys.argv),
    }
    try:
        write_text(marker, json.dumps(record, indent=2), what="run record", exclusive=True)
    except FileExistsError:
        try:
            previous = json.loads(marker.read_text())
        except (OSError, ValueError):
            previous = {}
        if job and previous.get("slurm_job_id") == job:
            attempts = int(previous.get("attempts", 1)) + 1
            folder = RunFolder(path, requeued=True)
            folder.finish("running", attempts=attempts, pid=os.getpid(), host=socket.gethostname())
            return folder
        raise RunFolderInUseError(
            f"run folder {path} already belongs to another run ({MARKER}: started {previous.get('started')}, "
            f"pid {previous.get('pid')}, status {previous.get('status')}); every run needs its own folder "
            "(leave hydra.run.dir at its default or give a new one)"
        ) from None
    return RunFolder(path)
