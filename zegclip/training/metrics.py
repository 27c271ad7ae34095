"""Zero-shot segmentation metrics (docs/evaluation.md §6): one confusion matrix over the whole evaluation set.

IoU per class; mIoU(S) / mIoU(U) are means over the seen / unseen classes, skipping classes
absent from both prediction and ground truth; hIoU = 2SU / (S + U); pAcc = correct / labelled
pixels; mAcc = mean per-class recall. Values are fractions in [0, 1].

The open-vocabulary protocol's numbers (docs/evaluation.md, detectron2's ``SemSegEvaluator``):
fwIoU = sum over the classes present in the ground truth of IoU x (the class's labelled pixels /
all labelled pixels); mIoU_gt = the mean IoU over the classes present in the ground truth
(detectron2 since July 2022, which CAT-Seg and its successors install): unlike mIoU, a class
that is predicted but absent from the ground truth does not count. The two means agree when every
class occurs in the ground truth.
Under DDP torchmetrics sums the matrices of all ranks, so with a non-repeating sampler the
numbers equal the single-process ones exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from zegclip.common.constants import IGNORE_INDEX


class ZeroShotSegmentationMetrics(MulticlassConfusionMatrix):
    """Confusion matrix over all evaluated pixels, summarised per class and per split.

    Args:
        class_names: names in class-id order; seen / unseen: the split's class indices.
    """

    def __init__(self, class_names: Sequence[str], seen: Sequence[int], unseen: Sequence[int]) -> None:
        super().__init__(num_classes=len(class_names), ignore_index=IGNORE_INDEX, validate_args=False)
        self.class_names = list(class_names)
        self.seen = list(seen)
        self.unseen = list(unseen)

    def summary(self) -> dict[str, float | dict[str, float]]:
        """``mIoU_seen``, ``mIoU_unseen``, ``hIoU``, ``mIoU``, ``pAcc``, ``mAcc``, ``fwIoU``, ``mIoU_gt``,
        ``IoU_per_class``."""
        return summarize(self.compute(), self.class_names, self.seen, self.unseen)


def summarize(
    confmat: torch.Tensor, class_names: Sequence[str], seen: Sequence[int], unseen: Sequence[int]
) -> dict[str, float | dict[str, float]]:
    """Metrics from a ``(C, C)`` confusion matrix (rows: ground truth, columns: prediction)."""
    confmat = confmat.double()
    tp = confmat.diag()
    gt = confmat.sum(dim=1)
    pred = confmat.sum(dim=0)
    union = gt + pred - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    recall = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))

    def mean(values: torch.Tensor, index: Sequence[int] | None = None) -> float:
        chosen = values if index is None else values[list(index)]
        chosen = chosen[~chosen.isnan()]
        return float(chosen.mean()) if chosen.numel() else float("nan")

    miou_seen = mean(iou, seen) if seen else float("nan")
    miou_unseen = mean(iou, unseen) if unseen else float("nan")
    if unseen and seen and miou_seen + miou_unseen > 0:
        hiou = 2 * miou_seen * miou_unseen / (miou_seen + miou_unseen)
    elif unseen and seen:
        hiou = 0.0
    else:
        hiou = float("nan")
    total = confmat.sum()
    present = gt > 0
    return {
        "mIoU_seen": miou_seen,
        "mIoU_unseen": miou_unseen,
        "hIoU": hiou,
        "mIoU": mean(iou),
        "pAcc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mAcc": mean(recall),
        "fwIoU": float((iou[present] * gt[present]).sum() / total) if total > 0 else float("nan"),
        "mIoU_gt": float(iou[present].mean()) if present.any() else float("nan"),
        "IoU_per_class": {name: float(v) for name, v in zip(class_names, iou.tolist())},
    }
