"""Errors that end a run, each with a message that says what to do.

Two families, both printed by the entry points (``zegclip/engine/cli.py``) as one line
``<ErrorType>: <message>`` without a traceback (``HYDRA_FULL_ERROR=1`` shows it):

* :class:`UserError` (a marker base, exit code 2 as argparse's usage errors): the user can fix it:
  a configuration value (:class:`ConfigError`), a checkpoint (:class:`CheckpointError`), an input
  file (:class:`InputError`), a dataset (``zegclip.data.errors.DataError``).
* :class:`RunError`: a run that stopped: interrupted (128 + signal: 130 / 143), diverged, or a
  file that could not be written (:class:`WriteError`, exit 1).

Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal


class UserError(Exception):
    """Marker base: the command was given something it cannot use; one line, exit code 2."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A configuration value (``key=value``) is invalid; the message names the key and the value."""


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be used here (unreadable, another model's or architecture, newer format)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint path names no file."""


class InputError(UserError, ValueError):
    """An input file or pattern (images to segment, embeddings, a CLIP weights file) cannot be used."""


class InputNotFoundError(InputError, FileNotFoundError):
    """An input path names no file."""


class ImageReadError(InputError, OSError):
    """An image or label file that cannot be decoded (unreadable, truncated, an unexpected mode), or
    an array that is no image; the message names the file and what was expected."""


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
            message = (
                f"{name}: saved step {step} to {checkpoint}; the SLURM job is requeued and resumes from it"
            )
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


class WriteError(RunError, OSError):
    """A file could not be written (permissions, a full disk, a read-only folder): the message names
    the file, the reason and, for a full disk, the space it needed (see :mod:`zegclip.common.atomic`)."""


class CheckpointWriteError(WriteError):
    """A checkpoint could not be written (permissions, disk full, ...)."""


class RunFolderInUseError(RunError, UserError, FileExistsError):
    """The run folder already belongs to another run (``hydra.run.dir`` names a used folder)."""

    exit_code = 2
