"""Turning predictions into pictures: denormalisation, colour overlays, W&B mask logging."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
IGNORE_INDEX = 255


def denormalize(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` normalised tensor -> ``(H, W, 3)`` uint8 RGB."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = image.detach().float().cpu() * std + mean
    return pixels.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def palette(num_classes: int, seed: int = 3) -> np.ndarray:
    """Distinct RGB colours ``(num_classes, 3)``, fixed for a given count."""
    rng = np.random.default_rng(seed)
    return rng.integers(40, 256, size=(num_classes, 3), dtype=np.uint8)


def overlay(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.5) -> np.ndarray:
    """Blend a class-index mask onto an RGB image (ignore pixels stay untouched)."""
    colours = palette(num_classes)
    out = image.astype(np.float32).copy()
    valid = mask != IGNORE_INDEX
    out[valid] = (1 - alpha) * out[valid] + alpha * colours[mask[valid]]
    return out.round().astype(np.uint8)


def _resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(array))[None, None].float()
    return torch.nn.functional.interpolate(tensor, size=size, mode="nearest")[0, 0].numpy().astype(array.dtype)


def log_wandb_masks(
    loggers: Sequence[Any], samples: Sequence[dict[str, Any]], class_names: Sequence[str], step: int
) -> None:
    """Send images with predicted and true masks to every W&B logger as mask overlays."""
    from lightning.pytorch.loggers import WandbLogger

    wandb_loggers = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    if not wandb_loggers:
        return
    import wandb

    labels = {i: name for i, name in enumerate(class_names)}
    labels[IGNORE_INDEX] = "ignore"
    images = []
    for sample in samples:
        image = denormalize(sample["image"])
        size = image.shape[:2]
        pred = _resize_nearest(sample["pred"].numpy().astype(np.uint8), size)
        true = _resize_nearest(sample["label"].numpy().astype(np.uint8), size)
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
