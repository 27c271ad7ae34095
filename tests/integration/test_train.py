"""Short training runs of the tiny model for every dataset x setting (synthetic data, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zegclip
from zegclip.engine.train import train

from .helpers import DATASETS, PAPER, SETTINGS, check_metric_values, read_metrics


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("dataset", DATASETS)
def test_train_writes_checkpoints(runs, dataset: str, setting: str) -> None:
    run = runs.get(dataset, setting)  # transductive runs start from the inductive run's last.ckpt
    ckpt_dir = run["dir"] / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["last.ckpt"]  # no "best" selection by default

    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # plain hyper-parameters only
    assert ckpt["global_step"] == 2
    hp = ckpt["hyper_parameters"]
    assert hp["setting"] == setting and hp["dataset_name"] == dataset
    assert hp["metadata"]["setting"] == setting
    # the experiment's recipe reaches the model even with model=tiny
    assert hp["model_config"]["prompt_tokens"] == PAPER[dataset]["prompt_tokens"]
    assert hp["templates"] == PAPER[dataset]["templates"]
    if setting == "transductive":
        assert hp["init_from"] == str(runs.last_ckpt(dataset, "inductive"))
    # the text set: seen classes only when inductive, else every class
    classes = hp["class_names"]
    expected_seen_bias = 0.1 if setting == "inductive" else 0.0
    assert hp["metadata"]["seen_bias"] == expected_seen_bias
    # only trainable weights change: the frozen CLIP is the same in every setting of a dataset
    inductive = torch.load(runs.last_ckpt(dataset), map_location="cpu", weights_only=True)["state_dict"]
    frozen = [
        k
        for k in inductive
        if k.startswith("model.image_encoder.vit.") or k.startswith("model.text_encoder.")
    ]
    assert frozen and all(torch.equal(inductive[k], ckpt["state_dict"][k]) for k in frozen)

    # test after training: metrics.json of the final weights, saying which weights and how chosen
    metrics = read_metrics(run["dir"])
    assert metrics["dataset"] == dataset and metrics["setting"] == setting
    assert metrics["weights"] == {
        "checkpoint": str(last),
        "step": 2,
        "selection": "final weights (last step)",
    }
    assert metrics["seed"] == 0 and f"dataset={dataset}" in metrics["overrides"]
    check_metric_values(metrics, classes)
    for key in ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc", "mAcc"):
        value = run["summary"][key]
        assert metrics[key] == (None if value != value else pytest.approx(value))


def test_best_checkpoint_is_opt_in_and_recorded(cfg_train) -> None:
    """callbacks=best test_weights=best tests the checkpoint with the best seen-class validation mIoU."""
    cfg = cfg_train("voc", "inductive", "callbacks=best", "test_weights=best", "trainer.max_steps=4")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    best = sorted((out / "checkpoints").glob("best-step*.ckpt"))
    assert len(best) == 1 and (out / "checkpoints" / "last.ckpt").is_file()
    weights = read_metrics(out)["weights"]
    assert weights["checkpoint"] == str(best[0])
    assert weights["selection"] == "best val/mIoU_seen on the validation split (opt-in)"
    assert weights["step"] == int(best[0].stem.removeprefix("best-step"))


@pytest.mark.parametrize("monitor", ["val/hIoU", "val/mIoU_unseen", "val/mIoU", "val/pAcc"])
def test_selection_with_unseen_labels_is_refused(cfg_train, monitor: str) -> None:
    cfg = cfg_train("voc", "inductive", "callbacks=best", f"callbacks.best_checkpoint.monitor={monitor}")
    with pytest.raises(ValueError, match=f"monitor={monitor} would choose weights with unseen-class labels"):
        train(cfg)


def test_test_weights_best_needs_a_selection(cfg_train) -> None:
    with pytest.raises(
        ValueError, match="test_weights=best needs a checkpoint selection: add callbacks=best"
    ):
        train(cfg_train("voc", "inductive", "test_weights=best"))


def test_train_without_unseen_classes(runs) -> None:
    run = runs.get("custom", "fully", "dataset.unseen=[]")
    metrics = read_metrics(run["dir"])
    assert metrics["hIoU"] is None and metrics["mIoU_unseen"] is None
    assert metrics["mIoU"] is not None and metrics["mIoU"] == metrics["mIoU_seen"]


def test_train_logs_lr_schedule_per_step(runs) -> None:
    """The LambdaLR is stepped every iteration: lr(t) = mmcv poly with linear warm-up (2 steps)."""
    import csv

    run = runs.get("voc", "inductive")
    rows = list(csv.DictReader((run["dir"] / "csv" / "metrics.csv").open()))
    lrs = {int(r["step"]): float(r["lr-AdamW/decay"]) for r in rows if r.get("lr-AdamW/decay")}
    base, min_lr, power, max_steps, warmup, ratio = 2e-4, 1e-6, 0.9, 2, 2, 1e-6

    def mmcv(t: int) -> float:
        regular = (base - min_lr) * (1 - t / max_steps) ** power + min_lr
        return regular * (1 - (1 - t / warmup) * (1 - ratio)) if t < warmup else regular

    assert set(lrs) == {0, 1}
    for t, lr in lrs.items():
        assert lr == pytest.approx(mmcv(t), rel=1e-9)


def test_train_without_logger(cfg_train) -> None:
    """``~logger``: the run trains its steps and checkpoints them, and no logger writes anything."""
    import json

    cfg = cfg_train("voc", "inductive", "~logger", "test_after_training=false")
    assert train(cfg) == {}  # nothing tested, nothing to return
    out = Path(cfg.paths.output_dir)
    # no csv/ (the default logger), tensorboard/ or wandb/ folder; no metrics.json (no test)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config_resolved.yaml", "run.json"]
    last = out / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    states = ckpt["optimizer_states"][0]["state"].values()  # every trainable tensor was updated twice
    assert states and all(float(s["step"]) == 2 and s["exp_avg"].abs().sum() > 0 for s in states)
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "finished" and status["last_checkpoint"] == str(last)


def test_train_without_frozen_clip_in_checkpoints(cfg_train) -> None:
    """save_frozen_clip=false: checkpoints hold only trainable weights; testing the best one still
    works (the frozen CLIP is kept from the module), and zegclip.load says what is missing."""
    cfg = cfg_train("voc", "inductive", "save_frozen_clip=false")
    summary = train(cfg)
    out = Path(cfg.paths.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.startswith(("model.image_encoder.vit.", "model.text_encoder.")) for k in state)
    assert any("prompt" in k for k in state) and any(k.startswith("model.decoder.") for k in state)
    assert summary and read_metrics(out)["mIoU"] is not None
    with pytest.raises(ValueError, match="CLIP"):  # random-init tiny CLIP: nothing to rebuild it from
        zegclip.load(last)


@pytest.mark.slow  # torch.compile: about 40 s in a fresh environment
def test_compile_and_bf16_mixed_precision(cfg_train, monkeypatch) -> None:
    """`compile=true trainer.precision=bf16-mixed` trains through the compiled forward under bf16
    autocast, and evaluates (CPU inductor: 10-60 s)."""
    from torch._dynamo.utils import counters

    calls: list[tuple[bool, torch.dtype, torch.dtype]] = []
    real_compile = torch.compile

    def spying_compile(fn, *args, **kwargs):
        compiled = real_compile(fn, *args, **kwargs)

        def forward(*a, **k):
            out = compiled(*a, **k)
            calls.append(
                (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), out.logits.dtype)
            )
            return out

        return forward

    monkeypatch.setattr(torch, "compile", spying_compile)
    counters.clear()
    cfg = cfg_train("voc", "inductive", "compile=true", "trainer.precision=bf16-mixed")
    summary = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert (
        torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
        == 2
    )
    assert 0.0 <= summary["pAcc"] <= 1.0
    # both training steps went through the compiled function (evaluation runs the model's own
    # sliding window), which dynamo captured into graphs, with bf16 autocast on: bf16 mask logits
    assert len(calls) == 2 and counters["stats"]["unique_graphs"] > 0
    assert set(calls) == {(True, torch.bfloat16, torch.bfloat16)}
    assert read_metrics(out)["precision"]["precision"] == "bf16-mixed"


def test_lightning_load_from_checkpoint(runs) -> None:
    from zegclip.training.module import ZegCLIPModule

    module = ZegCLIPModule.load_from_checkpoint(runs.last_ckpt("voc"), weights_only=True)
    assert module.setting == "inductive" and len(module.class_names) == 20
    assert module.hparams["metadata"]["class_names"] == module.class_names
