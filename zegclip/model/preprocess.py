"""Model input from a picture and back: :func:`normalize` (the shared normalisation as a ``(3, H, W)``
tensor) and :func:`denormalize` (for pictures of a batch).

Reading, the test-time resize and the normalisation itself live in :mod:`zegclip.common.images`
(one home for the datasets, the predictor and the apps).
"""

from __future__ import annotations

import numpy as np
import torch

from zegclip.common import images
from zegclip.common.constants import IMAGENET_MEAN, IMAGENET_STD


def normalize(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32, ImageNet mean/std on 0-255
    (:func:`zegclip.common.images.normalize`: the same numbers as the evaluation transform)."""
    return torch.from_numpy(np.ascontiguousarray(images.normalize(image).transpose(2, 0, 1)))


def denormalize(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` normalised tensor -> ``(H, W, 3)`` uint8 RGB."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = image.detach().float().cpu() * std + mean
    return pixels.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
