"""``eval.py evaluation.scales=[...] evaluation.flip=true``: the option reaches the evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest

from zegclip.engine.evaluate import evaluate

from .helpers import SUMMARY_KEYS, check_metric_values, read_metrics


def test_eval_one_scale_without_flip_equals_the_default(runs, cfg_eval) -> None:
    ckpt = runs.last_ckpt("voc", "inductive")
    cfg = cfg_eval(
        "voc", ckpt, "evaluation.scales=[1.0]", "evaluation.flip=false", "precision=fp32"
    )  # as trained
    assert list(cfg.evaluation.scales) == [1.0] and cfg.evaluation.flip is False
    evaluate(cfg)
    metrics = read_metrics(Path(cfg.paths.output_dir))
    trained = read_metrics(runs.get("voc", "inductive")["dir"])
    for key in SUMMARY_KEYS:
        assert metrics[key] == (None if trained[key] is None else pytest.approx(trained[key], abs=1e-12))


def test_eval_multi_scale_flip_changes_the_predictions(runs, cfg_eval) -> None:
    ckpt = runs.last_ckpt("voc", "inductive")
    cfg = cfg_eval("voc", ckpt, "evaluation.scales=[0.5,1.0,1.5]", "evaluation.flip=true")
    evaluate(cfg)
    metrics = read_metrics(Path(cfg.paths.output_dir))
    check_metric_values(metrics, list(cfg.dataset.class_names))
    trained = read_metrics(runs.get("voc", "inductive")["dir"])
    assert metrics["IoU_per_class"] != trained["IoU_per_class"]  # six views, not one
