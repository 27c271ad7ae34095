"""Two CPU processes (``trainer=ddp_sim``: ddp_spawn) evaluate exactly like one process, and train.

Plain ``ddp`` re-executes ``sys.argv`` (pytest) and hangs; ``ddp_spawn`` pickles the module into
the children, so what they compute comes back to the parent only through Lightning's results
(``trainer.test``'s return value and ``trainer.callback_metrics``), not through module attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from zegclip.engine.evaluate import evaluate
from zegclip.engine.train import train

from .helpers import (
    check_metric_values,
    compose_config,
    eval_overrides,
    one_torch_thread,
    read_metrics,
    synthetic,
)

# 3 test images (an odd count): 2 ranks get shards of 2 and 1; a padding sampler would repeat one
EXTRA_VAL = {"d": ([2, 0, 255], (48, 40)), "e": ([1, 2], (30, 70))}


def make_odd_custom(root: Path) -> Path:
    synthetic.make_custom(root / "custom")
    for k, (stem, (values, (h, w))) in enumerate(EXTRA_VAL.items()):
        synthetic.write_image(root / "custom" / "images" / "val" / f"{stem}.jpg", h, w, seed=30 + k)
        synthetic.write_label(
            root / "custom" / "labels" / "val" / f"{stem}.png", synthetic.stripes(values, h, w)
        )
    return root


class PixelCount(L.Callback):
    """Logs how many labelled pixels the test confusion matrix holds (summed over the ranks)."""

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("test/pixels", pl_module.test_metrics.compute().sum().float())


def labelled_pixels(root: Path) -> int:
    labels = sorted((root / "custom" / "labels" / "val").glob("*.png"))
    assert len(labels) == 3
    return sum(int((np.asarray(Image.open(p)) != 255).sum()) for p in labels)


@pytest.fixture(scope="module")
def single_and_ddp(runs, tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, Any]]:
    """Evaluate the custom inductive checkpoint with 1 process and with 2 (ddp_spawn) processes."""
    data = make_odd_custom(tmp_path_factory.mktemp("odd_data"))
    out = tmp_path_factory.mktemp("ddp_eval")
    ckpt = runs.last_ckpt("custom", "inductive")
    captured: dict[int, dict[str, Any]] = {}
    original_test = L.Trainer.test

    def test(self: L.Trainer, *args: Any, **kwargs: Any) -> Any:
        self.callbacks.append(PixelCount())
        results = original_test(self, *args, **kwargs)
        captured[self.world_size] = {
            "results": results,
            "callback_metrics": {k: float(v) for k, v in self.callback_metrics.items()},
            "strategy": type(self.strategy).__name__,
        }
        return results

    with pytest.MonkeyPatch.context() as mp, one_torch_thread():
        mp.setattr(L.Trainer, "test", test)
        for trainer in ("cpu", "ddp_sim"):
            cfg = compose_config(
                "eval", eval_overrides("custom", ckpt, data, f"trainer={trainer}"), out / trainer
            )
            summary = evaluate(cfg)
            world = 2 if trainer == "ddp_sim" else 1
            captured[world].update(summary=summary, dir=Path(cfg.paths.output_dir))
    captured[0] = {"pixels": labelled_pixels(data)}
    return captured


def test_ddp_spawn_metrics_equal_single_process(single_and_ddp) -> None:
    single, ddp = single_and_ddp[1], single_and_ddp[2]
    assert ddp["strategy"] == "DDPStrategy" and single["strategy"] == "SingleDeviceStrategy"
    assert len(single["results"]) == len(ddp["results"]) == 1
    logged = single["results"][0]
    assert {"test/mIoU", "test/mIoU_seen", "test/mIoU_unseen", "test/hIoU", "test/pAcc", "test/mAcc"} <= set(
        logged
    )
    assert any(k.startswith("test/IoU/") for k in logged)
    # every test pixel counted exactly once: no image skipped or repeated by the 2 ranks' shards
    assert logged["test/pixels"] == ddp["results"][0]["test/pixels"] == single_and_ddp[0]["pixels"]
    assert ddp["results"][0] == logged  # exact: the same confusion matrix, summed over the 2 ranks
    assert ddp["callback_metrics"] == single["callback_metrics"]
    assert (single["dir"] / "metrics.json").is_file()
    assert read_metrics(single["dir"])["pAcc"] == pytest.approx(logged["test/pAcc"], rel=1e-6)


def test_ddp_spawn_eval_writes_metrics_json(single_and_ddp) -> None:
    single, ddp = single_and_ddp[1], single_and_ddp[2]
    assert ddp["summary"], "evaluate() returned no metrics under ddp_spawn"
    per_run = ("run_dir", "overrides")  # where each run wrote its files and how it was launched
    expected = {k: v for k, v in read_metrics(single["dir"]).items() if k not in per_run}
    assert {k: v for k, v in read_metrics(ddp["dir"]).items() if k not in per_run} == expected


def test_ddp_spawn_training_run_with_csv_logger(cfg_train) -> None:
    """Two processes train with the default logger (csv): every trainable parameter gets a gradient
    (no unused-parameter error), the run checkpoints and tests the final weights, metrics.json comes
    from rank 0's results. Rank 0 logs each training step's loss and the validation metrics; the
    test metrics in the CSV are metrics.json's. (One run for all of it: a ddp_spawn run costs ~30 s.)"""
    import csv
    import math

    cfg = cfg_train("voc", "inductive", "trainer=ddp_sim", "dataset.batch_size=1")
    with one_torch_thread():
        summary = train(cfg)
    out = Path(cfg.paths.output_dir)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    losses = {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}
    assert sorted(losses) == [0, 1] and all(math.isfinite(v) and v > 0 for v in losses.values())
    lrs = [int(r["step"]) for r in rows if r.get("lr-AdamW/decay")]
    assert sorted(lrs) == [0, 1]
    val = [r for r in rows if r.get("val/mIoU_seen")]
    assert len(val) == 1  # one validation (val_check_interval=2 of 2 steps), logged once, not per rank
    assert all(0.0 <= float(val[0][f"val/{k}"]) <= 1.0 for k in ("mIoU_seen", "mIoU", "pAcc", "mAcc"))
    (test,) = list(csv.DictReader((out / "csv" / "test" / "metrics.csv").open()))
    metrics = read_metrics(out)
    for key in ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc", "mAcc"):
        logged = float(test[f"test/{key}"]) if test.get(f"test/{key}") else None
        assert logged == (None if metrics[key] is None else pytest.approx(metrics[key], rel=1e-6)), key
    assert metrics["weights"]["checkpoint"] == str(out / "checkpoints" / "last.ckpt")
    assert summary and metrics["dataset"] == "voc" and metrics["setting"] == "inductive"
    check_metric_values(metrics, list(cfg.dataset.class_names))
