"""Training targets for the three settings (docs/method.md §3): seen-index mapping and pseudo-labels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from zegclip.common.constants import IGNORE_INDEX


def seen_lookup(num_classes: int, seen: Sequence[int], ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Lookup table ``(num_classes + 1,)``: a seen class id -> its index in ``seen``; unseen class
    ids -> ``ignore_index``; the last entry, which every id outside ``0..num_classes-1`` (ignore)
    reads, -> ``ignore_index``. Its size does not grow with the ignore value (65535)."""
    table = torch.full((num_classes + 1,), ignore_index, dtype=torch.long)
    table[torch.as_tensor(list(seen), dtype=torch.long)] = torch.arange(len(seen))
    return table


def inductive_targets(labels: torch.Tensor, lookup: torch.Tensor) -> torch.Tensor:
    """Map dataset class ids to seen-list indices; unseen and ignore pixels become ignore."""
    lookup = lookup.to(labels.device)
    outside = lookup.numel() - 1
    labels = labels.long()
    return lookup[torch.where((labels >= 0) & (labels < outside), labels, outside)]


@torch.no_grad()
def pseudo_labels(logits: torch.Tensor, unseen: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Per pixel, the unseen class with the highest sigmoid score ``(B, H, W)`` (class ids).

    Args:
        logits: ``(B, C, H, W)`` mask logits over all classes (not modified; no gradient).
        unseen: class ids of the unseen classes.
    """
    unseen_ids = torch.as_tensor(
        list(unseen) if not torch.is_tensor(unseen) else unseen, device=logits.device
    )
    # sigmoid before argmax, as officially: saturated scores tie and then the first index wins
    best = logits.detach().index_select(1, unseen_ids).sigmoid().argmax(dim=1)
    return unseen_ids[best]


def transductive_targets(
    labels: torch.Tensor,
    logits: torch.Tensor,
    unseen: Sequence[int],
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Seen pixels keep their class id; pixels of unseen classes get pseudo-labels; ignore stays.

    Args:
        labels: ``(B, H, W)`` dataset class ids and ``ignore_index``.
        logits: ``(B, C, h, w)`` current mask logits over all classes (resized bilinearly to
            ``(H, W)`` if needed; only the unseen classes' maps are resized, which gives the
            same values since resizing acts on each map alone).
    """
    unseen_ids = torch.as_tensor(list(unseen), device=logits.device)
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(
            logits.detach().index_select(1, unseen_ids),
            size=labels.shape[-2:],
            mode="bilinear",
            align_corners=False,
        )
        unseen_ids = torch.arange(len(unseen_ids), device=logits.device)
        pseudo = torch.as_tensor(list(unseen), device=labels.device)[pseudo_labels(logits, unseen_ids)]
    else:
        pseudo = pseudo_labels(logits, unseen_ids)
    is_unseen = torch.isin(labels, torch.as_tensor(list(unseen), device=labels.device))
    return torch.where(is_unseen, pseudo, labels)
