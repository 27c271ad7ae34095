"""A training run on the tuning split (tuning=pseudo_unseen): it works with the benchmark's val /
test split absent, evaluates seen vs pseudo-unseen classes under tune/*, and returns that objective."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from zegclip.engine.objective import objective_value
from zegclip.engine.train import train

from .helpers import compose_config, read_metrics, synthetic, train_overrides

SHAPES_TINY = [
    "trainer=cpu",
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
    "trainer.num_sanity_val_steps=0",
    "dataset.batch_size=8",
    "dataset.layout.train_size=48",
    "dataset.layout.val_size=0",
    "dataset.layout.test_size=0",
    "optimizer.warmup_steps=1",
]


def logged_keys(run: Path) -> set[str]:
    keys: set[str] = set()
    for path in run.glob("csv/**/metrics.csv"):
        with path.open() as handle:
            keys |= set(next(csv.reader(handle)))
    return keys


def test_shapes_tuning_run_never_reads_val_or_test(tmp_path: Path) -> None:
    # val_size=test_size=0: the shapes world's val and test splits are empty; a normal run could not test
    run = tmp_path / "run"
    cfg = compose_config(
        "train", ["tuning=pseudo_unseen", "dataset.holdout_fraction=0.25", *SHAPES_TINY], run
    )
    summary = train(cfg)
    assert summary["split"] == "tune"
    assert objective_value(cfg, summary) == summary["hIoU"] and 0.0 <= summary["hIoU"] <= 1.0
    metrics = read_metrics(run)
    assert metrics["split"] == "tune" and metrics["dataset"] == "shapes-tuning"
    assert metrics["objective"] == {"name": "tune/hIoU", "value": metrics["hIoU"], "fair": True}
    unseen = {"red circle", "green square", "blue triangle", "yellow star"}
    assert len(metrics["IoU_per_class"]) == 12 and not unseen & set(metrics["IoU_per_class"])
    keys = logged_keys(run)
    assert "tune/hIoU" in keys and "val/hIoU" in keys and not any(k.startswith("test/") for k in keys)


def test_voc_tuning_run_works_without_the_test_split_files(tmp_path: Path) -> None:
    data = synthetic.make_voc(tmp_path / "data")
    base = data / "VOCdevkit" / "VOC2012"
    for name in synthetic.VOC_VAL:  # the test split's images and labels are gone
        (base / "JPEGImages" / f"{name}.jpg").unlink()
        (base / "SegmentationClass" / f"{name}.png").unlink()
    run = tmp_path / "run"
    cfg = compose_config(
        "train",
        train_overrides("voc", "inductive", data, "tuning=pseudo_unseen", "dataset.batch_size=1"),
        run,
    )
    summary = train(cfg)
    metrics = read_metrics(run)
    assert metrics["split"] == "tune" and list(metrics["IoU_per_class"]) == synthetic_voc_seen()
    value = objective_value(cfg, summary)
    assert value == summary["hIoU"] or (math.isnan(value) and math.isnan(summary["hIoU"]))
    assert "tune/hIoU" in logged_keys(run) or "tune/mIoU_seen" in logged_keys(run)


def synthetic_voc_seen() -> list[str]:
    from zegclip.data.classes import class_names

    return class_names("voc")[:15]
