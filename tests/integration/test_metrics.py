"""Zero-shot metrics from a hand-made confusion matrix (rows: ground truth, columns: prediction)."""

from __future__ import annotations

import math

import pytest
import torch

from zegclip.constants import IGNORE_INDEX
from zegclip.metrics import ZeroShotSegmentationMetrics, summarize

NAMES = ["a", "b", "c", "d", "e"]
SEEN, UNSEEN = [0, 1, 4], [2, 3]
# class 3 ("d") is absent from both the ground truth and the predictions: its IoU is undefined
CONFMAT = torch.tensor(
    [
        [8, 2, 0, 0, 0],  # a: 8 right, 2 predicted as b
        [1, 3, 0, 0, 0],  # b
        [0, 0, 5, 0, 5],  # c: half of it predicted as e
        [0, 0, 0, 0, 0],  # d: absent
        [1, 0, 0, 0, 0],  # e: predicted as a; never right
    ]
)


def test_summarize_hand_made_confusion_matrix() -> None:
    s = summarize(CONFMAT, NAMES, SEEN, UNSEEN)
    iou = s["IoU_per_class"]
    assert list(iou) == NAMES
    assert iou["a"] == pytest.approx(8 / (10 + 10 - 8))
    assert iou["b"] == pytest.approx(3 / (4 + 5 - 3))
    assert iou["c"] == pytest.approx(5 / (10 + 5 - 5))
    assert math.isnan(iou["d"])
    assert iou["e"] == 0.0  # in the ground truth and predicted, never right: 0, not NaN
    seen = (8 / 12 + 3 / 6 + 0.0) / 3
    unseen = 0.5  # d is skipped, not counted as 0
    assert s["mIoU_seen"] == pytest.approx(seen)
    assert s["mIoU_unseen"] == pytest.approx(unseen)
    assert s["hIoU"] == pytest.approx(2 * seen * unseen / (seen + unseen))
    assert s["mIoU"] == pytest.approx((8 / 12 + 3 / 6 + 0.5 + 0.0) / 4)
    assert s["pAcc"] == pytest.approx(16 / 25)
    assert s["mAcc"] == pytest.approx((8 / 10 + 3 / 4 + 5 / 10 + 0 / 1) / 4)


def test_summarize_undefined_and_zero_cases() -> None:
    # every unseen class absent from both: mIoU(U) and hIoU undefined
    confmat = torch.zeros(3, 3, dtype=torch.long)
    confmat[0, 0] = 4
    s = summarize(confmat, ["x", "y", "z"], seen=[0, 1], unseen=[2])
    assert s["mIoU_seen"] == 1.0 and math.isnan(s["mIoU_unseen"])
    # unseen present but never right: hIoU 0 (not NaN)
    confmat[2, 0] = 1
    s = summarize(confmat, ["x", "y", "z"], seen=[0, 1], unseen=[2])
    assert s["mIoU_unseen"] == 0.0 and s["hIoU"] == 0.0
    # no unseen classes at all (fully supervised vocabulary): hIoU undefined, mIoU defined
    s = summarize(confmat, ["x", "y", "z"], seen=[0, 1, 2], unseen=[])
    assert math.isnan(s["hIoU"]) and s["mIoU"] == pytest.approx((4 / 5 + 0.0) / 2)


def test_metric_ignores_ignore_and_accumulates_over_updates() -> None:
    metric = ZeroShotSegmentationMetrics(NAMES, SEEN, UNSEEN)
    target = torch.tensor([[[0, 0, IGNORE_INDEX, 2], [1, IGNORE_INDEX, 4, 2]]])
    pred = torch.tensor([[[0, 1, 3, 2], [1, 1, 0, 4]]])
    metric.update(pred, target)
    metric.update(pred, target)  # the whole set is one confusion matrix
    confmat = metric.compute()
    assert int(confmat.sum()) == 2 * 6  # the two ignore pixels are not counted
    assert int(confmat[:, 3].sum()) == 0  # the prediction under an ignore pixel is dropped
    s = metric.summary()
    assert s["pAcc"] == pytest.approx(3 / 6)
    assert s["IoU_per_class"]["c"] == pytest.approx(1 / 2)
    metric.reset()
    assert int(metric.compute().sum()) == 0
