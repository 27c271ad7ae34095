"""Inference helpers: seen-class calibration, whole-image and sliding-window scoring (SPEC 1.5, 5)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps images ``(N, 3, h, w)`` to calibrated scores ``(N, C, h, w)``."""


def calibrate(logits: torch.Tensor, seen: Sequence[int] | None, seen_bias: float = 0.1) -> torch.Tensor:
    """``sigmoid(logits)``, minus ``seen_bias`` on the ``seen`` channels ``(B, C, H, W)``."""
    scores = logits.sigmoid()
    if seen is not None and len(seen) > 0 and seen_bias != 0:
        offset = torch.zeros(scores.shape[1], dtype=scores.dtype, device=scores.device)
        offset[torch.as_tensor(list(seen), device=scores.device)] = seen_bias
        scores = scores - offset[None, :, None, None]
    return scores


def whole_image(score_fn: ScoreFn, images: torch.Tensor) -> torch.Tensor:
    """Score the whole image in one pass."""
    return score_fn(images)


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window origins along one axis, the last one clamped to the border (mmseg's rule)."""
    count = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(count)]


def sliding_window(
    score_fn: ScoreFn,
    images: torch.Tensor,
    num_classes: int,
    crop: int,
    stride: int,
    window_batch: int = 8,
) -> torch.Tensor:
    """Average the scores of ``crop`` x ``crop`` windows every ``stride`` pixels.

    Windows of all images are encoded ``window_batch`` at a time; each pixel's score is the
    sum over the windows covering it divided by their count.

    Args:
        images: ``(B, 3, H, W)``. Returns: ``(B, C, H, W)``.
    """
    if crop <= 0 or stride <= 0:
        raise ValueError(f"crop and stride must be positive, got crop={crop}, stride={stride}")
    if stride > crop:
        raise ValueError(f"stride ({stride}) larger than crop ({crop}) would leave pixels no window covers")
    b, _, height, width = images.shape
    boxes = [
        (y, x, min(y + crop, height), min(x + crop, width))
        for y in window_starts(height, crop, stride)
        for x in window_starts(width, crop, stride)
    ]
    out = images.new_zeros(b, num_classes, height, width)
    count = images.new_zeros(1, 1, height, width)
    per_pass = max(1, window_batch // b)  # window positions per forward pass
    for start in range(0, len(boxes), per_pass):
        chunk = boxes[start : start + per_pass]
        windows = torch.cat([images[:, :, y1:y2, x1:x2] for y1, x1, y2, x2 in chunk], dim=0)
        scores = score_fn(windows).reshape(len(chunk), b, num_classes, *windows.shape[-2:])
        for (y1, x1, y2, x2), score in zip(chunk, scores):
            out[:, :, y1:y2, x1:x2] += score
            count[:, :, y1:y2, x1:x2] += 1
    return out / count


def upsampled_argmax(scores: torch.Tensor, size: tuple[int, int], max_bytes: int = 256 * 2**20) -> torch.Tensor:
    """``argmax`` over classes of ``scores`` ``(C, h, w)`` bilinearly resized to ``size`` ``(H, W)``.

    Equals ``interpolate(scores)[...].argmax(0)`` (ties go to the lower index) without holding
    all ``C x H x W`` resized scores: classes are resized a chunk at a time (at most
    ``max_bytes`` of resized scores), keeping the running maximum.
    """
    num_classes = scores.shape[0]
    height, width = size
    chunk = max(1, min(num_classes, max_bytes // max(1, height * width * scores.element_size())))
    best = best_index = None
    for start in range(0, num_classes, chunk):
        resized = F.interpolate(scores[None, start : start + chunk], size=size, mode="bilinear", align_corners=False)[0]
        value, index = resized.max(0)
        index = index + start
        if best is None:
            best, best_index = value, index
        else:
            better = value > best  # strict: an earlier class keeps a tie
            best = torch.where(better, value, best)
            best_index = torch.where(better, index, best_index)
    assert best_index is not None
    return best_index
