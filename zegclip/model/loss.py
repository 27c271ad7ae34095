"""ZegCLIP's non-mutually-exclusive loss: sigmoid focal (x100) + dice (x1) (docs/method.md §2).

Same numbers as the official loss, computed without one-hot targets or full-size temporaries:

* the focal loss over all classes is ``sum over all (image, class, pixel) of the negative
  term`` plus, at each labelled pixel, ``positive term - negative term`` of its own class.
  Ignore pixels (255) thus count as negatives for every class, as officially.
* the full-size sums (negative focal term and ``sum(sigmoid)`` for dice) come from one
  autograd function that works in chunks and keeps only the logits for its analytic backward;
  everything at labelled pixels is a gather of one value per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class LossOutput:
    """Weighted loss terms (as logged), ``total = loss_mask + loss_dice``, and pixel accuracy (%)."""

    total: torch.Tensor
    loss_mask: torch.Tensor
    loss_dice: torch.Tensor
    accuracy: torch.Tensor
    num_masks: float


class _FullSizeTerms(torch.autograd.Function):
    """The parts of the loss that touch every logit, without full-size intermediates.

    Forward, for logits ``(B, C, P)`` and the labelled pixels (``image, class, pixel`` index
    triples): per (image, class) ``sum_p (1-alpha) sigmoid^gamma softplus`` and ``sum_p
    sigmoid``, and the logit of the true class at each labelled pixel. Rows are processed
    ``chunk`` at a time; backward recomputes from the saved logits and scatters the labelled
    pixels' gradients into the same buffer.
    """

    @staticmethod
    def forward(ctx, logits, image_idx, class_idx, pixel_idx, alpha: float, gamma: float, chunk: int):  # type: ignore[override]
        b, c, p = logits.shape
        rows = logits.reshape(b * c, p)
        neg = logits.new_empty(b * c, dtype=torch.float32)
        sig = logits.new_empty(b * c, dtype=torch.float32)
        for start in range(0, b * c, chunk):
            x = rows[start : start + chunk].float()
            prob = x.sigmoid()
            neg[start : start + chunk] = ((1 - alpha) * prob.pow(gamma) * F.softplus(x)).sum(-1)
            sig[start : start + chunk] = prob.sum(-1)
        x_target = logits[image_idx, class_idx, pixel_idx].float()
        ctx.save_for_backward(logits, image_idx, class_idx, pixel_idx)
        ctx.alpha, ctx.gamma, ctx.chunk = alpha, gamma, chunk
        return neg.reshape(b, c), sig.reshape(b, c), x_target

    @staticmethod
    def backward(ctx, grad_neg, grad_sig, grad_target):  # type: ignore[override]
        logits, image_idx, class_idx, pixel_idx = ctx.saved_tensors
        alpha, gamma, chunk = ctx.alpha, ctx.gamma, ctx.chunk
        b, c, p = logits.shape
        rows = logits.reshape(b * c, p)
        grad_neg, grad_sig = grad_neg.reshape(-1), grad_sig.reshape(-1)
        grad = torch.empty_like(logits)
        grad_rows = grad.view(b * c, p)
        for start in range(0, b * c, chunk):
            x = rows[start : start + chunk].float()
            prob = x.sigmoid()
            d_neg = (1 - alpha) * prob.pow(gamma) * (gamma * (1 - prob) * F.softplus(x) + prob)
            d_sig = prob * (1 - prob)
            g = grad_neg[start : start + chunk, None] * d_neg + grad_sig[start : start + chunk, None] * d_sig
            grad_rows[start : start + chunk] = g.to(grad.dtype)
        grad.index_put_((image_idx, class_idx, pixel_idx), grad_target.to(grad.dtype), accumulate=True)
        return grad, None, None, None, None, None, None


def _focal_terms(x: torch.Tensor, alpha: float, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative focal terms of logits ``x`` (any shape)."""
    p = x.sigmoid()
    pos = alpha * (1 - p).pow(gamma) * F.softplus(-x)
    neg = (1 - alpha) * p.pow(gamma) * F.softplus(x)
    return pos, neg


def global_num_masks(local: torch.Tensor) -> float:
    """Mean over processes of the number of (image, present class) pairs, at least 1."""
    num = local.detach().float().reshape(1)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num)
        num = num / dist.get_world_size()
    return max(float(num.item()), 1.0)


class FocalDiceLoss(nn.Module):
    """``focal_weight * focal + dice_weight * dice`` on mask logits, each divided by ``num_masks``.

    Args:
        focal_weight, dice_weight: 100 and 1 officially.
        alpha, gamma: focal parameters (0.25, 2).
        ignore_index: label of unlabelled pixels (255).
        chunk_elements: logits processed per chunk in the full-size sums (memory bound).
    """

    def __init__(
        self,
        focal_weight: float = 100.0,
        dice_weight: float = 1.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
        ignore_index: int = 255,
        chunk_elements: int = 1 << 22,
    ) -> None:
        super().__init__()
        self.focal_weight = focal_weight
        self.dice_weight = dice_weight
        self.alpha = alpha
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.chunk_elements = chunk_elements

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """logits ``(B, C, h, w)`` (upsampled to the label size if needed), labels ``(B, H, W)``
        with class indices ``0..C-1`` and ``ignore_index``."""
        b, c = logits.shape[:2]
        if labels.ndim == 4 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 3 or labels.shape[0] != b:
            raise ValueError(f"labels must be (B, H, W) with B={b}, got {tuple(labels.shape)}")
        if logits.shape[-2:] != labels.shape[-2:]:
            logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        x = logits.flatten(2)  # (B, C, P)
        num_pixels = x.shape[-1]
        labels = labels.flatten(1).long()
        valid = labels != self.ignore_index
        if bool((labels[valid] >= c).any() | (labels[valid] < 0).any()):
            bad = labels[valid & ((labels >= c) | (labels < 0))].unique().tolist()
            raise ValueError(f"label values {bad[:10]} are outside 0..{c - 1} and {self.ignore_index}")

        chunk = max(1, self.chunk_elements // max(num_pixels, 1))
        image_idx, pixel_idx = valid.nonzero(as_tuple=True)
        class_idx = labels[image_idx, pixel_idx]
        # x_target: the logit of the true class at each labelled pixel
        neg_sum, sig_sum, x_target = _FullSizeTerms.apply(
            x, image_idx, class_idx, pixel_idx, self.alpha, self.gamma, chunk
        )
        pos, neg = _focal_terms(x_target, self.alpha, self.gamma)
        focal = (neg_sum.sum() + (pos - neg).sum()) / num_pixels

        pair = image_idx * c + class_idx  # (image, class) pair of each labelled pixel
        intersection = torch.zeros(b * c, device=x.device, dtype=torch.float32).index_add(0, pair, x_target.sigmoid())
        target_sum = torch.bincount(pair, minlength=b * c).to(torch.float32)
        present = target_sum > 0
        dice = 1 - (2 * intersection + 1) / (sig_sum.reshape(-1) + target_sum + 1)

        num_masks = global_num_masks(present.sum())
        loss_mask = self.focal_weight * focal / num_masks
        loss_dice = self.dice_weight * dice[present].sum() / num_masks
        with torch.no_grad():
            correct = (x.argmax(dim=1) == labels)[valid]
            accuracy = correct.float().mean() * 100 if correct.numel() else x.new_zeros(())
        return LossOutput(loss_mask + loss_dice, loss_mask, loss_dice, accuracy, num_masks)


class CrossEntropySegLoss(nn.Module):
    """Softmax cross-entropy over the classes (mutually exclusive), for the loss ablation.

    Args:
        weight: multiplier of the loss; ignore_index: label of unlabelled pixels.
    """

    def __init__(self, weight: float = 1.0, ignore_index: int = 255) -> None:
        super().__init__()
        self.weight = weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        if logits.shape[-2:] != labels.shape[-2:]:
            logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
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
