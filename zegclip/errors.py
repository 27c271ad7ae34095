"""Errors that end a training or evaluation run, each with a message that says what to do.

The entry points print the message in one line and exit with :attr:`RunError.exit_code`
(non-zero: a scheduler must never read an interrupted or diverged run as a success).
"""

from __future__ import annotations

import signal


class RunError(RuntimeError):
    """Base class: a run stopped for a reason the user can act on."""

    exit_code = 1


class RunInterrupted(RunError):
    """A signal (SIGTERM, SIGINT, the SLURM pre-timeout signal) stopped the run.

    Args:
        signum: the signal received; step: the training step reached (None outside training);
        checkpoint: the checkpoint that holds that step (None if nothing needed saving);
        requeued: the SLURM job was requeued and will resume from ``checkpoint`` by itself.
    """

    def __init__(self, signum: int, step: int | None, checkpoint: str | None, requeued: bool = False) -> None:
        self.signum = int(signum)
        self.step = step
        self.checkpoint = checkpoint
        self.requeued = requeued
        self.exit_code = 128 + self.signum
        name = signal.Signals(self.signum).name
        if requeued:
            message = f"{name}: saved step {step} to {checkpoint}; the SLURM job is requeued and resumes from it"
        elif checkpoint:
            message = (
                f"{name}: stopped at step {step}, saved to {checkpoint}; resume with the same command plus "
                f"ckpt_path={checkpoint}"
            )
        elif step is not None:
            message = f"{name}: stopped at step {step} (nothing to save)"
        else:
            message = f"{name}: stopped"
        super().__init__(message)


class NonFiniteLossError(RunError, FloatingPointError):
    """The training loss became NaN or infinite."""


class NonFiniteWeightsError(RunError, FloatingPointError):
    """A checkpoint was about to store NaN or infinite weights."""


class CheckpointWriteError(RunError, OSError):
    """A checkpoint could not be written (permissions, disk full, ...)."""


class RunFolderInUseError(RunError, FileExistsError):
    """The run folder already belongs to another run."""
