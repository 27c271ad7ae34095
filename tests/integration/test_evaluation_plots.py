"""Every evaluation writes plots/*.png into its run folder and sends them to W&B."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from zegclip.engine.evaluate import evaluate
from zegclip.engine.train import train

from .test_wandb import offline_runs, record_with, wandb_offline, wandb_overrides  # noqa: F401 (fixture)

PLOTS = ("confusion_matrix", "iou_per_class", "samples")


def check_pngs(run_dir: Path) -> None:
    for name in PLOTS:
        path = run_dir / "plots" / f"{name}.png"
        assert path.is_file(), path
        with Image.open(path) as image:
            assert image.format == "PNG"


def test_training_run_and_eval_write_plots(runs, cfg_eval) -> None:
    check_pngs(runs.get("voc", "inductive")["dir"])  # the test after training
    cfg = cfg_eval("voc", runs.last_ckpt("voc", "inductive"))
    evaluate(cfg)
    check_pngs(Path(cfg.paths.output_dir))


def test_plots_reach_wandb(cfg_train, wandb_offline, tmp_path: Path) -> None:  # noqa: F811
    save_dir = tmp_path / "wandb_save"
    overrides = [o for o in wandb_overrides(save_dir) if not o.startswith("test_after_training")]
    train(cfg_train("voc", "inductive", *overrides))
    (run,) = offline_runs(save_dir)
    media = run / "files" / "media" / "images" / "test" / "plots"
    for name in PLOTS:
        assert len(list(media.glob(f"{name}_*.png"))) == 1, sorted(media.rglob("*"))
    record_with(run, b"test/plots/confusion_matrix", b"test/hIoU")
