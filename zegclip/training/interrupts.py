"""Signals turned into a flag that training checks at step boundaries.

SIGTERM (schedulers, ``kill``), SIGINT (Ctrl+C) and, inside a SLURM job, the pre-timeout signal
only set :attr:`Interrupts.received`; :class:`zegclip.training.checkpointing.LastCheckpoint` then saves
``last.ckpt`` at the end of the current step and stops the run with
:class:`zegclip.common.errors.RunInterrupted` (a non-zero exit). A second Ctrl+C interrupts at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from types import FrameType
from typing import Any

from zegclip.common.errors import ConfigError

SIGNALS = {
    "SIGTERM": signal.SIGTERM,
    "SIGINT": signal.SIGINT,
    "SIGUSR1": signal.SIGUSR1,
    "SIGUSR2": signal.SIGUSR2,
}


def parse_signal(name: str | int | None) -> int | None:
    """``"SIGUSR2"``, ``"USR2"`` or a number -> the signal number; None / "" -> None."""
    if name in (None, ""):
        return None
    if isinstance(name, int):
        return name
    key = str(name).upper()
    key = key if key.startswith("SIG") else f"SIG{key}"
    if key not in SIGNALS:
        raise ConfigError(f"unknown signal {name!r}: expected one of {sorted(SIGNALS)}")
    return int(SIGNALS[key])


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` takes (``<array job>_<task>`` for array jobs), or None outside SLURM."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


class Interrupts:
    """Context manager installing the handlers for the duration of a run.

    Args:
        requeue_signal: inside a SLURM job, the signal that means "save and requeue" (the
            submitit launcher sends SIGUSR2 ``signal_delay_s`` before the time limit); None: none.
    """

    def __init__(self, requeue_signal: str | int | None = "SIGUSR2") -> None:
        self.requeue_signal = parse_signal(requeue_signal) if slurm_job_id() else None
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requeue_requested(self) -> bool:
        return self.received is not None and self.received == self.requeue_signal

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl+C does not wait for the step to end
        self.received = signum

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            wanted = [signal.SIGTERM, signal.SIGINT] + ([self.requeue_signal] if self.requeue_signal else [])
            for signum in wanted:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def requeue(self) -> bool:
        """Ask SLURM to requeue this job (``scontrol requeue``); True on success."""
        job = slurm_job_id()
        if not job:
            return False
        try:
            return subprocess.run(["scontrol", "requeue", job], check=False, timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False
