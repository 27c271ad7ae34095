"""ZegCLIP's loss (docs/method.md §2): sigmoid focal (x100) + dice (x1) on the mask logits, the
classes not mutually exclusive.

Read from the top:

1. **The definition**, with ordinary torch ops and autograd, as the official code computes it:
   :func:`one_hot_targets`, :func:`sigmoid_focal_loss`, :func:`dice_loss` and their combination
   :func:`focal_dice` (each divided by ``num_masks``, then weighted). The golden tests compare it with
   the official implementation's tensors.
2. :class:`FocalDiceLoss`, the module training uses. ``implementation="fused"`` (the default, what
   training has always run) computes the same numbers with
   :func:`zegclip.model.loss_fused.fused_focal_dice`: no one-hot target, no full-size upsampled
   logits or temporaries (the measured saving is in that module); ``"plain"`` runs :func:`focal_dice`.
   The two are tested equal (values and gradients) in tests/test_model_loss.py.
3. :class:`CrossEntropySegLoss`, softmax cross-entropy for the loss ablation.

The loss is per decoder layer; deep supervision (``loss.aux_layers``) adds it over the layers
(:mod:`zegclip.training.module`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from zegclip.common.constants import IGNORE_INDEX
from zegclip.common.errors import ConfigError
from zegclip.model.loss_fused import fused_focal_dice

IMPLEMENTATIONS = ("fused", "plain")
"""Values of ``FocalDiceLoss(implementation=...)`` (config ``loss.implementation``); the first is
the default."""


@dataclass
class LossOutput:
    """Weighted loss terms (as logged), ``total = loss_mask + loss_dice``, and pixel accuracy (%)."""

    total: torch.Tensor
    loss_mask: torch.Tensor
    loss_dice: torch.Tensor
    accuracy: torch.Tensor
    num_masks: float


# ----------------------------------------------------------------------------- the definition


def one_hot_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(B, C, H, W)`` float binary masks of labels ``(B, H, W)``: 1 where a pixel's label is the
    class. An ignore pixel (any label outside ``0..C-1``) is 0 in every mask: a negative for every
    class, as officially."""
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, 1, 1)
    return (labels[:, None] == classes).float()


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """``(B, C)``: per image and class, the mean over pixels of the focal loss (Lin et al. 2017)
    ``alpha_t (1 - p_t)^gamma BCE(logits, targets)`` of logits and binary targets ``(B, C, H, W)``."""
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * bce).flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(B, C)``: ``1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1)`` over the pixels,
    ``p = sigmoid(logits)``."""
    prob, targets = logits.sigmoid().flatten(2), targets.flatten(2)
    return 1 - (2 * (prob * targets).sum(-1) + 1) / (prob.sum(-1) + targets.sum(-1) + 1)


def focal_dice(
    logits: torch.Tensor,
    labels: torch.Tensor,
    focal_weight: float = 100.0,
    dice_weight: float = 1.0,
    alpha: float = 0.25,
    gamma: float = 2.0,
    ignore_index: int = IGNORE_INDEX,
) -> LossOutput:
    """The paper's loss, plainly: logits ``(B, C, h, w)`` upsampled bilinearly to the label size,
    one-hot targets of all ``C`` classes, the focal loss over all (image, class) pairs, the dice loss
    over the present ones, each summed and divided by ``num_masks`` (present pairs, averaged over
    processes). float16 / bfloat16 logits are computed in float32 (float64 stays float64).

    Holds several ``(B, C, H, W)`` tensors for the backward pass: :class:`FocalDiceLoss`'s fused
    default computes the same without them.
    """
    labels = check_labels(logits, labels, ignore_index)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    targets = one_hot_targets(labels, logits.shape[1]).to(logits.dtype)
    present = targets.flatten(2).sum(-1) > 0  # (B, C)
    num_masks = global_num_masks(present.sum())
    loss_mask = focal_weight * sigmoid_focal_loss(logits, targets, alpha, gamma).sum() / num_masks
    loss_dice = dice_weight * dice_loss(logits, targets)[present].sum() / num_masks
    with torch.no_grad():
        accuracy = pixel_accuracy(logits.argmax(dim=1), labels, ignore_index)
    return LossOutput(loss_mask + loss_dice, loss_mask, loss_dice, accuracy, num_masks)


def global_num_masks(local: torch.Tensor) -> float:
    """Mean over processes of the number of (image, present class) pairs, at least 1."""
    num = local.detach().float().reshape(1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num)
        num = num / dist.get_world_size()
    return max(float(num.item()), 1.0)


def pixel_accuracy(predicted: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Percentage of labelled pixels whose predicted class is the label (0 when none is labelled)."""
    valid = labels != ignore_index
    correct = (predicted == labels)[valid]
    return correct.float().mean() * 100 if correct.numel() else torch.zeros((), device=labels.device)


def check_labels(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Labels ``(B, H, W)`` or ``(B, 1, H, W)`` for logits ``(B, C, ...)`` as long ``(B, H, W)``;
    ValueError for another shape or a value outside ``0..C-1`` and ``ignore_index``."""
    b, c = logits.shape[:2]
    if labels.ndim == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 3 or labels.shape[0] != b:
        raise ValueError(f"labels must be (B, H, W) with B={b}, got {tuple(labels.shape)}")
    labels = labels.long()
    valid = labels != ignore_index
    if bool((labels[valid] >= c).any() | (labels[valid] < 0).any()):
        bad = labels[valid & ((labels >= c) | (labels < 0))].unique().tolist()
        raise ValueError(f"label values {bad[:10]} are outside 0..{c - 1} and {ignore_index}")
    return labels


# ----------------------------------------------------------------------------- the module


class FocalDiceLoss(nn.Module):
    """``focal_weight * focal + dice_weight * dice`` on mask logits, each divided by ``num_masks``.

    Args:
        focal_weight, dice_weight: 100 and 1 officially.
        alpha, gamma: focal parameters (0.25, 2).
        ignore_index: label of unlabelled pixels (``IGNORE_INDEX``, 65535).
        chunk_elements: fused only: full-size logits processed per chunk in the full-size sums
            (None: 2^20 on CPU, where chunks of 4 MiB stay in cache, 2^24 on GPUs).
        implementation: ``"fused"`` (:func:`~zegclip.model.loss_fused.fused_focal_dice`, the
            default) or ``"plain"`` (:func:`focal_dice`): the same loss, the first without
            full-size temporaries.
    """

    def __init__(
        self,
        focal_weight: float = 100.0,
        dice_weight: float = 1.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
        ignore_index: int = IGNORE_INDEX,
        chunk_elements: int | None = None,
        implementation: str = IMPLEMENTATIONS[0],
    ) -> None:
        super().__init__()
        if implementation not in IMPLEMENTATIONS:
            raise ConfigError(
                f"loss.implementation must be one of {', '.join(map(repr, IMPLEMENTATIONS))}, "
                f"got {implementation!r}"
            )
        self.focal_weight = focal_weight
        self.dice_weight = dice_weight
        self.alpha = alpha
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.chunk_elements = chunk_elements
        self.implementation = implementation

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """logits ``(B, C, h, w)`` (upsampled bilinearly to the label size if smaller), labels
        ``(B, H, W)`` with class indices ``0..C-1`` and ``ignore_index``.

        Runs in float32 whatever the logits' dtype and an enclosing autocast (bf16-mixed
        training): the upsampling and every sum are float32; the gradient returns in the
        logits' dtype.
        """
        with torch.autocast(logits.device.type, enabled=False):
            if self.implementation == "plain":
                return focal_dice(
                    logits,
                    labels,
                    self.focal_weight,
                    self.dice_weight,
                    self.alpha,
                    self.gamma,
                    self.ignore_index,
                )
            return self._fused(logits, labels)

    def _fused(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        labels = check_labels(logits, labels, self.ignore_index)
        chunk_elements = self.chunk_elements or (1 << 20 if logits.device.type == "cpu" else 1 << 24)
        terms = fused_focal_dice(logits, labels, self.alpha, self.gamma, self.ignore_index, chunk_elements)
        num_masks = global_num_masks(terms.present.sum())
        loss_mask = self.focal_weight * terms.focal / num_masks
        loss_dice = self.dice_weight * terms.dice[terms.present].sum() / num_masks
        with torch.no_grad():
            accuracy = pixel_accuracy(terms.predicted, labels.flatten(1), self.ignore_index)
        return LossOutput(loss_mask + loss_dice, loss_mask, loss_dice, accuracy, num_masks)


class CrossEntropySegLoss(nn.Module):
    """Softmax cross-entropy over the classes (mutually exclusive), for the loss ablation.

    Args:
        weight: multiplier of the loss; ignore_index: label of unlabelled pixels.
    """

    def __init__(self, weight: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.weight = weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        with torch.autocast(logits.device.type, enabled=False):  # float32, as FocalDiceLoss
            return self._forward(logits, labels)

    def _forward(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        if logits.shape[-2:] != labels.shape[-2:]:
            logits = F.interpolate(
                logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False
            )
        labels = labels.long()
        valid = labels != self.ignore_index
        if valid.any():
            loss = self.weight * F.cross_entropy(logits.float(), labels, ignore_index=self.ignore_index)
        else:
            loss = logits.sum() * 0.0
        with torch.no_grad():
            correct = (logits.argmax(dim=1) == labels)[valid]
            accuracy = correct.float().mean() * 100 if correct.numel() else logits.new_zeros(())
        zero = loss.new_zeros(())
        return LossOutput(loss, zero, zero, accuracy, float(valid.any()))
