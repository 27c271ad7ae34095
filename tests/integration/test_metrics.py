"""Zero-shot metrics from a hand-made confusion matrix (rows: ground truth, columns: prediction)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zegclip.common.constants import IGNORE_INDEX
from zegclip.training.metrics import ZeroShotSegmentationMetrics, summarize

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


# class "c" is predicted but absent from the ground truth: mIoU counts it (IoU 0), mIoU_gt does not
CONFMAT_FW = torch.tensor(
    [
        [6, 1, 1],  # a: 8 pixels
        [0, 2, 0],  # b: 2 pixels
        [0, 0, 0],  # c: no pixel in the ground truth, 1 predicted
    ]
)


def test_fwiou_and_ground_truth_miou_by_hand() -> None:
    s = summarize(CONFMAT_FW, ["a", "b", "c"], seen=[0, 1, 2], unseen=[])
    iou_a, iou_b = 6 / (8 + 6 - 6), 2 / (2 + 3 - 2)
    assert s["IoU_per_class"]["c"] == 0.0
    assert s["fwIoU"] == pytest.approx(8 / 10 * iou_a + 2 / 10 * iou_b)
    assert s["mIoU_gt"] == pytest.approx((iou_a + iou_b) / 2)
    assert s["mIoU"] == pytest.approx((iou_a + iou_b + 0.0) / 3)


def detectron2_metrics(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore: int) -> dict[str, float]:
    """detectron2's SemSegEvaluator.evaluate, written out: a (C+1) x (C+1) matrix indexed
    [prediction, ground truth], the extra row/column for ignored ground truth."""
    gt = gt.copy()
    gt[gt == ignore] = num_classes
    conf = np.bincount(
        (num_classes + 1) * pred.reshape(-1) + gt.reshape(-1), minlength=(num_classes + 1) ** 2
    )
    conf = conf.reshape(num_classes + 1, num_classes + 1)
    tp = conf.diagonal()[:-1].astype(np.float64)
    pos_gt = conf[:-1, :-1].sum(axis=0).astype(np.float64)
    pos_pred = conf[:-1, :-1].sum(axis=1).astype(np.float64)
    valid = pos_gt > 0
    iou = tp[valid] / (pos_gt + pos_pred - tp)[valid]
    return {
        "mIoU": iou.mean(),
        "fwIoU": (iou * pos_gt[valid] / pos_gt.sum()).sum(),
        "mACC": (tp[valid] / pos_gt[valid]).mean(),
        "pACC": tp.sum() / pos_gt.sum(),
    }


def test_fwiou_matches_detectron2_on_pixels() -> None:
    from zegclip.common.constants import IGNORE_INDEX

    gen = torch.Generator().manual_seed(0)
    num_classes = 7
    gt = torch.randint(0, num_classes - 1, (3, 20, 30), generator=gen)  # class 6 never in the ground truth
    gt[:, :2] = IGNORE_INDEX
    pred = torch.where(
        torch.rand(gt.shape, generator=gen) < 0.6,
        gt.clamp(max=num_classes - 1),
        torch.randint(0, num_classes, gt.shape, generator=gen),
    )
    metric = ZeroShotSegmentationMetrics([str(i) for i in range(num_classes)], list(range(num_classes)), [])
    metric.update(pred, gt)
    ours = metric.summary()
    ref = detectron2_metrics(pred.numpy(), gt.numpy(), num_classes, IGNORE_INDEX)
    assert (pred == 6).any()  # a class predicted without ground truth: where mIoU and mIoU_gt differ
    assert ours["fwIoU"] == pytest.approx(ref["fwIoU"], abs=1e-12)
    assert ours["mIoU_gt"] == pytest.approx(ref["mIoU"], abs=1e-12)
    assert ours["mAcc"] == pytest.approx(ref["mACC"], abs=1e-12)
    assert ours["pAcc"] == pytest.approx(ref["pACC"], abs=1e-12)
    assert ours["mIoU"] < ours["mIoU_gt"]
