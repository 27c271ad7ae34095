"""What goes to W&B besides the logged scalars: images with predicted and true masks, the evaluation plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zegclip.model.preprocess import denormalize

WANDB_IGNORE = 255
"""The mask value W&B shows ignored pixels with (its masks hold 0..255 only)."""


def wandb_mask_ids(
    pred: np.ndarray, true: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Predicted and true class-id maps as W&B mask data (uint8) and their ``class_labels``.

    W&B masks hold values 0..255. Up to 255 classes the values are the class ids and ignore is
    255; with more (A-847, PC-459) each image's classes present are numbered 0, 1, ... in id
    order (past 254 of them the rest share value 254, "other classes"), so that every class keeps
    its own name in the legend.
    """
    num_classes = len(class_names)
    pred, true = np.asarray(pred, dtype=np.int64), np.asarray(true, dtype=np.int64)
    if num_classes <= WANDB_IGNORE:
        ids = np.arange(num_classes)
    else:
        both = np.concatenate([pred.ravel(), true.ravel()])
        ids = np.unique(both[(both >= 0) & (both < num_classes)])
    value = np.full(num_classes + 1, WANDB_IGNORE, dtype=np.uint8)  # the last entry: ignore
    value[ids] = np.minimum(np.arange(len(ids)), WANDB_IGNORE - 1)
    labels = {k: class_names[int(i)] for k, i in enumerate(ids[: WANDB_IGNORE - 1])}
    if len(ids) >= WANDB_IGNORE:
        labels[WANDB_IGNORE - 1] = class_names[int(ids[-1])] if len(ids) == WANDB_IGNORE else "other classes"
    labels[WANDB_IGNORE] = "ignore"

    def encode(mask: np.ndarray) -> np.ndarray:
        return value[np.where((mask >= 0) & (mask < num_classes), mask, num_classes)]

    return encode(pred), encode(true), labels


def _resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(array))[None, None].float()
    return (
        torch.nn.functional.interpolate(tensor, size=size, mode="nearest")[0, 0].numpy().astype(array.dtype)
    )


def log_wandb_masks(
    loggers: Sequence[Any], samples: Sequence[dict[str, Any]], class_names: Sequence[str], step: int
) -> None:
    """Send images with predicted and true masks to every W&B logger as mask overlays
    (W&B draws its own interactive legend from ``class_labels``)."""
    from lightning.pytorch.loggers import WandbLogger

    wandb_loggers = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    if not wandb_loggers:
        return
    import wandb

    images = []
    for sample in samples:
        image = denormalize(sample["image"])
        size = image.shape[:2]
        pred, true, labels = wandb_mask_ids(sample["pred"].numpy(), sample["label"].numpy(), class_names)
        pred, true = _resize_nearest(pred, size), _resize_nearest(true, size)
        images.append(
            wandb.Image(
                image,
                caption=sample.get("name"),
                masks={
                    "prediction": {"mask_data": pred, "class_labels": labels},
                    "ground_truth": {"mask_data": true, "class_labels": labels},
                },
            )
        )
    for lg in wandb_loggers:
        lg.experiment.log({"val/examples": images, "trainer/global_step": step})


def log_plots_to_wandb(
    loggers: Sequence[Any], paths: dict[str, Path], step: int, stage: str = "test"
) -> None:
    """Send the PNGs to every W&B logger as ``<stage>/plots/<name>`` images at ``step``."""
    from lightning.pytorch.loggers import WandbLogger

    wandb_loggers = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    if not wandb_loggers or not paths:
        return
    import wandb

    payload: dict[str, Any] = {
        f"{stage}/plots/{name}": wandb.Image(str(path)) for name, path in paths.items()
    }
    payload["trainer/global_step"] = step
    for lg in wandb_loggers:
        lg.experiment.log(payload)
