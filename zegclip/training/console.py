"""A quiet, honest console: each line once, steps not epochs, validation results as they come.

* :func:`quiet_lightning` drops Lightning's advertising tips and messages about its own defaults,
  and the warnings that describe deliberate choices of this project (frozen towers in eval mode,
  loaders without workers for generated data, ...).
* :class:`StepProgressBar` shows ``step k / max_steps`` for iteration-based training instead of
  Lightning's "Epoch 0/-2".
* :class:`ValidationReport` prints one line per validation (seen / unseen / harmonic mIoU).
* :func:`model_summary` replaces Lightning's layer table (whose FLOPs column is always 0 here).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console

from zegclip.common.metric_names import LABELS, VALIDATION_KEYS

console = Console(soft_wrap=True)  # never wrap a line mid-number when there is no terminal

_NOISE = (
    "💡 Tip",
    "Trainer already configured with",
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "`Trainer(val_check_interval=",
    "LOCAL_RANK:",
    "You are using a CUDA device",
)
_WARNINGS = (
    r"Found \d+ module\(s\) in eval mode",  # the frozen CLIP towers, on purpose
    r".*isinstance\(treespec, LeafSpec\)",
    r"The '\w+_dataloader' does not have many workers",  # generated data needs none
    r"The number of training batches .* is smaller than the logging interval",
    r"Checkpoint directory .* exists and is not empty",
    r".*does not have many workers which may be a bottleneck",
    r"You are using `torch.load` with `weights_only=False`",
    r"Precision bf16-mixed is not supported by the model summary",
    r"It is recommended to use `self.log\(.*sync_dist=True",  # our epoch metrics are reduced already
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.lstrip().startswith(prefix) for prefix in _NOISE)


def quiet_lightning() -> None:
    """Install the log filters and warning filters (idempotent)."""
    for name in (
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "lightning.pytorch.utilities.rank_zero",
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
        # Lightning adds its own console handler when it is imported before logging is configured;
        # under Hydra every record then appeared twice (once plain, once through Hydra's handler)
        root_has_handlers = bool(logging.getLogger().handlers)
        for handler in list(logger.handlers):
            if root_has_handlers and isinstance(handler, logging.StreamHandler):
                logger.removeHandler(handler)
                logger.propagate = True
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


@rank_zero_only
def announce(message: str) -> None:
    console.print(message)


class StepProgressBar(RichProgressBar):
    """Rich progress bar counting optimizer steps up to ``max_steps`` across epochs."""

    def _step_based(self) -> bool:
        return self.trainer.max_steps is not None and self.trainer.max_steps > 0

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self._step_based() else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if self._step_based():
            return f"{'Training (steps)':{len(self.validation_description)}}"
        return super()._get_train_description(current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._step_based() and self.train_progress_bar_id is not None:
            return  # one bar for the whole run, not one per epoch
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not self._step_based():
            return super().on_train_batch_end(trainer, pl_module, *args)
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()


def _percent(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if number != number else f"{100 * number:.1f}"


class ValidationReport(L.Callback):
    """One console line per validation during training: ``step  mIoU(S)  mIoU(U)  hIoU  mIoU``."""

    KEYS = tuple((LABELS[key], f"val/{key}") for key in VALIDATION_KEYS)
    """(label, logged name) of each metric on the line."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        parts = [f"{label} {_percent(metrics[key])}" for label, key in self.KEYS if key in metrics]
        total = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
        # a staged run (transductive in one command) names the stage the weights are in
        stage = f" ({pl_module.weights_setting()} stage)" if getattr(pl_module, "inductive_steps", 0) else ""
        line = f"validation at step {trainer.global_step}{total}{stage}: " + "  ".join(parts)
        bar = trainer.progress_bar_callback
        target = getattr(bar, "progress", None)
        (target.console if target is not None else console).print(
            line, soft_wrap=True
        )  # one line, never wrapped


def model_summary(module: Any) -> str:
    """``trainable / frozen`` parameter counts per top-level part of ``module.model``."""
    model = getattr(module, "model", module)
    rows = []
    for name, child in model.named_children():
        trainable = sum(p.numel() for p in child.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in child.parameters() if not p.requires_grad)
        rows.append(f"{name} {trainable:,} trainable" + (f" + {frozen:,} frozen" if frozen else ""))
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"model: {total:,} trainable parameters ({'; '.join(rows)})"
