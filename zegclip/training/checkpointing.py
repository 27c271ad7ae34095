"""Checkpoints that are never lost, torn or NaN.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file and renames it into
  place (:mod:`zegclip.common.atomic`), so an interrupted or failed write never replaces a good
  checkpoint and leaves no temporary file; a failed write stops the run with
  :class:`~zegclip.common.errors.CheckpointWriteError` naming the file, the reason, the space needed and
  the last good checkpoint (Lightning's own writer can swallow a ``PermissionError``).
* :class:`LastCheckpoint` keeps ``checkpoints/last.ckpt`` at the newest weights: every
  ``every_n_steps`` optimizer steps, before every validation, at the end of training, and at the
  end of the step in which a signal arrived (then the run stops with
  :class:`~zegclip.common.errors.RunInterrupted`). It refuses to save non-finite weights.
* :func:`check_selection_metric`: the fair-protocol rule for an opt-in "best" checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from zegclip.common.atomic import write_file
from zegclip.common.errors import CheckpointWriteError, ConfigError, NonFiniteWeightsError, RunInterrupted
from zegclip.training.console import announce
from zegclip.training.interrupts import Interrupts


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` through :func:`zegclip.common.atomic.write_file`: a temporary file, fsync, rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        write_file(path, lambda f: torch.save(checkpoint, f), what="checkpoint", error=CheckpointWriteError)


def nonfinite_parameters(module: torch.nn.Module) -> list[str]:
    """Names of trainable parameters that hold NaN or infinite values."""
    return [n for n, p in module.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all())]


def save_finite(trainer: L.Trainer, module: L.LightningModule, path: Path, last_good: str | None) -> None:
    """The full training state (loops, optimizer, data stream) at ``path``; never NaN/inf weights."""
    bad = nonfinite_parameters(module)
    if bad:
        raise NonFiniteWeightsError(
            f"step {trainer.global_step}: {len(bad)} trainable tensor(s) hold NaN/inf (e.g. {bad[:3]}); not "
            f"saving them. Last good checkpoint: {last_good or 'none'}"
        )
    trainer.save_checkpoint(path, weights_only=False)


class StageCheckpoint(L.Callback):
    """Keeps the weights at the end of a run's first stage as their own checkpoint.

    A transductive run in one command trains ``step`` inductive steps first; their final weights
    (the inductive model) go to ``dirpath/<name>`` when that step is done. The file's path travels
    in the run's checkpoints, so a run resumed after the boundary (in a new folder) still reports it.
    """

    def __init__(self, dirpath: str | Path, step: int, name: str = "inductive_stage.ckpt") -> None:
        if step < 1:
            raise ValueError(f"a stage ends at a step >= 1, got {step}")
        self.step = int(step)
        self.target = Path(dirpath) / name
        self.saved: str | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.step and self.saved is None:
            save_finite(trainer, pl_module, self.target, None)
            self.saved = str(self.target)
            announce(
                f"stage 1 (inductive) done at step {self.step}: {self.target}; stage 2 (transductive) starts"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"saved": self.saved, "step": self.step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved = state_dict.get("saved")


class LastCheckpoint(L.Callback):
    """Keeps ``dirpath/last.ckpt`` at the newest weights and turns signals into a clean stop.

    Args:
        dirpath: checkpoint folder; every_n_steps: save period in optimizer steps (0: only at
        validation, at the end and on a signal); interrupts: the run's signal flag (None: none);
        resumed_from: the checkpoint a resumed run started from (named as the last good one
        until this run saves its own).
    """

    def __init__(
        self,
        dirpath: str | Path,
        every_n_steps: int = 500,
        interrupts: Interrupts | None = None,
        resumed_from: str | None = None,
    ) -> None:
        if every_n_steps < 0:
            raise ConfigError(f"checkpoint_every_n_steps must be >= 0, got {every_n_steps}")
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = int(every_n_steps)
        self.interrupts = interrupts
        self.saved_step = -1
        self.last_good: str | None = resumed_from
        self._seen_step = -1

    # -- saving ------------------------------------------------------------------------------

    def save(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Write ``last.ckpt`` for the current step (once per step); never with NaN weights."""
        step = trainer.global_step
        if step == self.saved_step:
            return
        try:
            save_finite(trainer, module, self.path, self.last_good)
        except CheckpointWriteError as err:
            raise CheckpointWriteError(f"step {step}: {err}; {self._last_good_text()}") from err
        self.saved_step = step
        self.last_good = str(self.path)

    def _last_good_text(self) -> str:
        if self.last_good is None:
            return "no checkpoint was saved before"
        step = f" (step {self.saved_step})" if self.saved_step >= 0 else ""
        return (
            f"last good checkpoint: {self.last_good}{step}, resume with the same command plus "
            f"ckpt_path={self.last_good}"
        )

    def _pending(self, trainer: L.Trainer) -> bool:
        local = self.interrupts is not None and self.interrupts.received is not None
        return bool(trainer.strategy.reduce_boolean_decision(local, all=False))

    def _stop(self, trainer: L.Trainer, checkpoint: str | None) -> None:
        assert self.interrupts is not None
        signum = self.interrupts.received or 15
        requeued = False
        if self.interrupts.requeue_requested and checkpoint:
            requeued = self.interrupts.requeue() if trainer.is_global_zero else True
        raise RunInterrupted(signum, trainer.global_step, checkpoint, requeued=requeued)

    # -- hooks -------------------------------------------------------------------------------

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        stepped = trainer.global_step != self._seen_step  # False while gradients accumulate
        self._seen_step = trainer.global_step
        if not stepped:
            return
        if self._pending(trainer):
            self.save(trainer, pl_module)
            self._stop(trainer, str(self.path))
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self.save(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # saved before validating: an interrupt during a long validation then loses nothing
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self.save(trainer, pl_module)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.interrupts is not None and self.interrupts.received is not None and trainer.world_size == 1:
            self._stop(trainer, self.last_good if self.saved_step == trainer.global_step else None)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, pl_module)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.interrupts is not None and self.interrupts.received is not None and trainer.world_size == 1:
            assert self.interrupts.received is not None
            raise RunInterrupted(self.interrupts.received, None, None)


SELECTION_SAFE = ("val/mIoU_seen",)


def check_selection_metric(monitor: str, setting: str, has_unseen: bool) -> None:
    """Refuse a "best checkpoint" metric that an inductive or transductive method may not use.

    With unseen classes, every validation metric but ``val/mIoU_seen`` depends on unseen-class
    labels (and for VOC, COCO-Stuff and Context the validation split is the test split).
    """
    zero_shot = has_unseen and setting in ("inductive", "transductive")
    if zero_shot and monitor.startswith("val/") and monitor not in SELECTION_SAFE:
        raise ConfigError(
            f"callbacks.best_checkpoint.monitor={monitor} would choose weights with unseen-class labels, "
            f"which a {setting} zero-shot method may not use (the validation split is the test split for "
            f"VOC, COCO-Stuff and Context); allowed: {', '.join(SELECTION_SAFE)} or a train/ metric"
        )
