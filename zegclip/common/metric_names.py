"""The evaluation metrics' keys (as ``metrics.json`` and the loggers name them) and their labels.

Every table, console line and report takes its keys and column labels from here.
"""

from __future__ import annotations

SUMMARY_KEYS = ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc", "mAcc", "fwIoU", "mIoU_gt")
"""Every summary metric a test reports (``test/<key>``, ``metrics.json``), in this order."""
TABLE_KEYS = ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc")
"""The columns of the sweep report's table."""
VALIDATION_KEYS = ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU")
"""The metrics of the console's validation line."""
HEADLINE_KEYS = ("mIoU_seen", "mIoU_unseen", "hIoU")
"""The zero-shot headline: the benchmark tables of the shapes world (ablation, test-time augmentation)."""
OBJECTIVE_KEYS = ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc", "mAcc")
"""The metrics a hyper-parameter search may optimise (``optimized_metric``)."""
LABELS = {
    "mIoU_seen": "mIoU(S)",
    "mIoU_unseen": "mIoU(U)",
    "hIoU": "hIoU",
    "mIoU": "mIoU",
    "pAcc": "pAcc",
    "mAcc": "mAcc",
    "fwIoU": "fwIoU",
    "mIoU_gt": "mIoU(GT classes)",
}
"""How tables and the console label each metric."""
