"""Evaluation of produced checkpoints: metrics.json content, own and cross-dataset vocabularies."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zegclip.engine.evaluate import evaluate

from .helpers import REPO_ROOT, SUMMARY_KEYS, check_metric_values, eval_overrides, read_metrics

METRICS_KEYS = {
    *SUMMARY_KEYS,
    "IoU_per_class",
    "dataset",
    "setting",
    "weights",
    "seen_bias",
    "seed",
    "overrides",
    "run_dir",
    "split",
    "precision",
}


def _nan_mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


@pytest.mark.parametrize(
    ("setting", "seen_bias"), [("inductive", 0.1), ("fully", 0.0), ("transductive", 0.0)]
)
def test_eval_writes_metrics_json(runs, cfg_eval, setting: str, seen_bias: float) -> None:
    run = runs.get("voc", setting)
    ckpt = run["dir"] / "checkpoints" / "last.ckpt"
    cfg = cfg_eval("voc", ckpt, "precision=fp32")  # the precision the run was trained and tested in
    summary = evaluate(cfg)
    metrics = read_metrics(Path(cfg.paths.output_dir))

    assert set(metrics) == METRICS_KEYS
    assert metrics["precision"]["requested"] == "fp32" and metrics["precision"]["precision"] == "fp32"
    assert metrics["dataset"] == "voc"
    assert metrics["setting"] == setting  # the checkpoint's own setting
    assert metrics["weights"] == {"checkpoint": str(ckpt), "step": 2, "selection": "given by ckpt_path"}
    assert metrics["seed"] == 0 and metrics["run_dir"] == cfg.paths.output_dir and metrics["split"] == "test"
    assert metrics["seen_bias"] == seen_bias  # the checkpoint's calibration on its own vocabulary
    class_names = list(run["cfg"].dataset.class_names)
    check_metric_values(metrics, class_names)
    # the summary is consistent with the per-class IoUs (NaN-skipping means, harmonic mean)
    iou = list(metrics["IoU_per_class"].values())
    unseen_ids = set(run["cfg"].dataset.unseen)
    unseen = [v for i, v in enumerate(iou) if i in unseen_ids]
    seen_iou = [v for i, v in enumerate(iou) if i not in unseen_ids]
    assert metrics["mIoU_seen"] == pytest.approx(_nan_mean(seen_iou))
    assert metrics["mIoU_unseen"] == pytest.approx(_nan_mean(unseen))
    assert metrics["mIoU"] == pytest.approx(_nan_mean(iou))
    s, u = metrics["mIoU_seen"], metrics["mIoU_unseen"]
    assert metrics["hIoU"] == pytest.approx(2 * s * u / (s + u) if s + u > 0 else 0.0)
    for key in SUMMARY_KEYS:  # metrics.json holds what evaluate returned (NaN -> null)
        assert metrics[key] == (None if math.isnan(summary[key]) else pytest.approx(summary[key]))
    # the same final weights, the same calibration: the numbers of the run's own test
    trained = read_metrics(run["dir"])
    for key in SUMMARY_KEYS:
        assert metrics[key] == (None if trained[key] is None else pytest.approx(trained[key], abs=1e-12))


@pytest.mark.parametrize("dataset", ["coco", "context"])
def test_eval_cross_dataset_uses_no_seen_offset(runs, cfg_eval, dataset: str) -> None:
    """A VOC-trained inductive checkpoint on another vocabulary: no seen offset, that vocabulary's classes."""
    ckpt = runs.last_ckpt("voc", "inductive")
    cfg = cfg_eval(dataset, ckpt)
    evaluate(cfg)
    metrics = read_metrics(Path(cfg.paths.output_dir))
    assert set(metrics) == METRICS_KEYS
    assert metrics["seen_bias"] == 0.0
    assert metrics["dataset"] == dataset and metrics["weights"]["checkpoint"] == str(ckpt)
    assert metrics["setting"] == "inductive"
    check_metric_values(metrics, list(cfg.dataset.class_names))


def test_eval_explicit_seen_bias_is_recorded(runs, cfg_eval) -> None:
    ckpt = runs.last_ckpt("voc", "inductive")
    cfg = cfg_eval("voc", ckpt, "evaluation.seen_bias=0.25")
    evaluate(cfg)
    metrics = read_metrics(Path(cfg.paths.output_dir))
    assert metrics["seen_bias"] == 0.25 and metrics["setting"] == "inductive"


def test_eval_setting_override(runs, cfg_eval) -> None:
    ckpt = runs.last_ckpt("voc", "inductive")
    cfg = cfg_eval("voc", ckpt, "setting=fully")
    assert cfg.setting == "fully"
    evaluate(cfg)
    metrics = read_metrics(Path(cfg.paths.output_dir))
    assert metrics["setting"] == "fully"


def test_eval_needs_a_checkpoint(cfg_eval) -> None:
    cfg = cfg_eval("voc", "null")
    with pytest.raises(ValueError, match="ckpt_path"):
        evaluate(cfg)


def test_eval_cli(runs, data_dir: Path, tmp_path: Path) -> None:
    """``python eval.py ckpt_path=... dataset=voc``: Hydra's run folder gets .hydra/ and metrics.json."""
    ckpt = runs.last_ckpt("voc", "inductive")
    out = tmp_path / "cli"
    overrides = eval_overrides(
        "voc", ckpt, data_dir, f"hydra.run.dir={out}", f"paths.log_dir={tmp_path / 'logs'}", "precision=fp32"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "eval.py", *overrides],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / ".hydra" / "config.yaml").is_file()
    metrics = read_metrics(out)  # paths.output_dir defaults to Hydra's run folder
    assert set(metrics) == METRICS_KEYS
    assert metrics["weights"]["checkpoint"] == str(ckpt) and metrics["seen_bias"] == 0.1
    assert metrics["mIoU"] == pytest.approx(
        read_metrics(runs.get("voc", "inductive")["dir"])["mIoU"], abs=1e-12
    )


def test_eval_of_a_run_folder_tests_its_final_weights(runs, cfg_eval) -> None:
    run_dir = runs.get("voc", "inductive")["dir"]
    cfg = cfg_eval("voc", run_dir)
    evaluate(cfg)
    weights = read_metrics(Path(cfg.paths.output_dir))["weights"]
    assert weights["checkpoint"] == str(run_dir / "checkpoints" / "last.ckpt") and weights["step"] == 2
