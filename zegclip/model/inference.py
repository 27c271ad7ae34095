"""Inference helpers: seen-class calibration, whole-image and sliding-window scoring (docs/method.md §1.5,
docs/data.md §5), and multi-scale + flip test-time augmentation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from zegclip.common.class_names import resolve_seen
from zegclip.common.errors import ConfigError

SEEN_BIAS = 0.1
"""The paper's calibration: seen-class scores minus 0.1 before the argmax (inductive setting only)."""


def default_seen_bias(setting: str | None) -> float:
    """The official calibration of a setting: 0.1 when inductive, none otherwise (docs/method.md §1.5)."""
    return SEEN_BIAS if setting in (None, "inductive") else 0.0


def own_seen_bias(
    metadata: Mapping[str, Any], class_names: Sequence[str], setting: str | None = None
) -> float:
    """The calibration rule: a checkpoint's own ``seen_bias`` on its own vocabulary (its setting's
    official one, :func:`default_seen_bias`, if it stores none); none (0) on any other vocabulary:
    its seen classes mean nothing there. ``setting`` overrides the checkpoint's."""
    if list(class_names) != list(metadata.get("class_names") or []):
        return 0.0
    bias = metadata.get("seen_bias")
    return float(bias) if bias is not None else default_seen_bias(setting or metadata.get("setting"))


def calibration(
    metadata: Mapping[str, Any], class_names: Sequence[str], seen: Any = None, seen_bias: float | None = None
) -> tuple[list[int] | None, float]:
    """The seen classes and the offset a prediction subtracts from their scores.

    ``seen`` given (indices and/or names, see :func:`zegclip.common.class_names.resolve_seen`): those
    classes, minus ``seen_bias`` (default :data:`SEEN_BIAS`, the paper's). ``seen`` None: the
    checkpoint's own seen classes and :func:`own_seen_bias` if ``class_names`` is its vocabulary (as
    ``eval.py``; ``seen_bias`` overrides the offset), else none.
    """
    if seen is not None:
        return resolve_seen(seen, class_names), SEEN_BIAS if seen_bias is None else float(seen_bias)
    own_seen = list(metadata.get("seen") or [])
    if own_seen and list(class_names) == list(metadata.get("class_names") or []):
        return own_seen, own_seen_bias(metadata, class_names) if seen_bias is None else float(seen_bias)
    return None, 0.0


ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps images ``(N, 3, h, w)`` to calibrated scores ``(N, C, h, w)``."""


def calibrate(logits: torch.Tensor, seen: Sequence[int] | None, seen_bias: float = SEEN_BIAS) -> torch.Tensor:
    """``sigmoid(logits)``, minus ``seen_bias`` on the ``seen`` channels ``(B, C, H, W)``."""
    scores = logits.sigmoid()
    if seen is not None and len(seen) > 0 and seen_bias != 0:
        offset = torch.zeros(scores.shape[1], dtype=scores.dtype, device=scores.device)
        offset[torch.as_tensor(list(seen), device=scores.device)] = seen_bias
        scores = scores - offset[None, :, None, None]
    return scores


def calibrate_(
    logits: torch.Tensor, seen: Sequence[int] | None, seen_bias: float = SEEN_BIAS
) -> torch.Tensor:
    """:func:`calibrate` in place (the same numbers, no new full-size tensor)."""
    scores = logits.sigmoid_()
    if seen is not None and len(seen) > 0 and seen_bias != 0:
        offset = torch.zeros(scores.shape[1], dtype=scores.dtype, device=scores.device)
        offset[torch.as_tensor(list(seen), device=scores.device)] = seen_bias
        scores.sub_(offset[None, :, None, None])
    return scores


def resize_into(images: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(images, size=out.shape[-2:], mode="bilinear", align_corners=False)`` written
    into ``out`` (the same kernel, no new tensor)."""
    return torch.ops.aten.upsample_bilinear2d.out(images, list(out.shape[-2:]), False, None, None, out=out)


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
    b, _, height, width = images.shape
    out = images.new_zeros(b, num_classes, height, width)
    count = images.new_zeros(1, 1, height, width)
    for chunk, windows in window_batches(images, crop, stride, window_batch):
        scores = score_fn(windows).reshape(len(chunk), b, num_classes, *windows.shape[-2:])
        for (y1, x1, y2, x2), score in zip(chunk, scores):
            out[:, :, y1:y2, x1:x2] += score
            count[:, :, y1:y2, x1:x2] += 1
    return out / count


Box = tuple[int, int, int, int]
"""A window ``(y1, x1, y2, x2)``."""


def window_batches(
    images: torch.Tensor, crop: int, stride: int, window_batch: int
) -> Iterator[tuple[list[Box], torch.Tensor]]:
    """The windows of :func:`sliding_window`, ``window_batch`` at a time: ``(boxes, (n * B, 3, h, w))``
    with the ``B`` images of each window position next to each other."""
    if crop <= 0 or stride <= 0:
        raise ConfigError(f"crop and stride must be positive, got crop={crop}, stride={stride}")
    if stride > crop:
        raise ConfigError(f"stride ({stride}) larger than crop ({crop}) would leave pixels no window covers")
    b, _, height, width = images.shape
    boxes = [
        (y, x, min(y + crop, height), min(x + crop, width))
        for y in window_starts(height, crop, stride)
        for x in window_starts(width, crop, stride)
    ]
    per_pass = max(1, window_batch // b)  # window positions per forward pass
    for start in range(0, len(boxes), per_pass):
        chunk = boxes[start : start + per_pass]
        yield chunk, torch.cat([images[:, :, y1:y2, x1:x2] for y1, x1, y2, x2 in chunk], dim=0)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``(round(height * scale), round(width * scale))``, rounding halves up as mmcv does, at least 1."""
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def multi_scale_flip(
    score_fn: ScoreFn, images: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = False
) -> torch.Tensor:
    """Test-time augmentation: the mean of the scores of rescaled and horizontally flipped views.

    Each view is the input resized bilinearly by ``scale`` (and mirrored when ``flip``); its
    scores from ``score_fn`` (whole-image or sliding-window) are mirrored back and resized
    bilinearly to the input size, then all views are averaged. A scale of 1.0 scores the input
    itself, so ``scales=[1.0], flip=False`` is exactly ``score_fn(images)``.

    Args:
        images: ``(B, 3, H, W)``. Returns: ``(B, C, H, W)``.
    """
    scales = [float(s) for s in scales]
    if not scales or any(not s > 0 for s in scales):
        raise ConfigError(f"scales must be a non-empty list of positive numbers, got {scales}")
    height, width = images.shape[-2:]
    total: torch.Tensor | None = None
    views = 0
    for scale in scales:
        size = scaled_size(height, width, scale)
        scaled = (
            images
            if size == (height, width)
            else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        )
        for mirrored in (False, True) if flip else (False,):
            scores = score_fn(scaled.flip(-1) if mirrored else scaled)
            if mirrored:
                scores = scores.flip(-1)
            if scores.shape[-2:] != (height, width):
                scores = F.interpolate(scores, size=(height, width), mode="bilinear", align_corners=False)
            total = scores if total is None else total + scores
            views += 1
    assert total is not None
    return total / views
