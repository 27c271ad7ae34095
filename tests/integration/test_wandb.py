"""W&B offline: a short run with validation writes an offline run with mask overlays and the config."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zegclip.engine.train import train

DEAD_SERVER = "http://127.0.0.1:9"  # any attempt to reach a W&B server would go nowhere


@pytest.fixture()
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """Offline W&B with every folder in tmp_path; records Python connections that leave the machine."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_BASE_URL", DEAD_SERVER)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for var, sub in [("WANDB_DIR", "wdir"), ("WANDB_CACHE_DIR", "wcache"), ("WANDB_CONFIG_DIR", "wconfig")]:
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wdata"))
    outside: list = []
    connect = socket.socket.connect

    def guarded(sock: socket.socket, address) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in (
            "127.0.0.1",
            "::1",
            "localhost",
        ):
            outside.append(address)
            raise OSError(f"test: network access to {address} refused")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield outside
    wandb.finish()


def offline_runs(save_dir: Path) -> list[Path]:
    return sorted((save_dir / "wandb").glob("offline-run-*"))


def record_with(run: Path, *keys: bytes, timeout: float = 60.0) -> bytes:
    """The run's ``.wandb`` record once it holds every key: W&B's service (shared by the runs of one
    process) may still be writing the file when ``wandb.finish()`` returns."""
    deadline = time.monotonic() + timeout
    while True:
        record = next(run.glob("run-*.wandb")).read_bytes()
        missing = [k for k in keys if k not in record]
        if not missing or time.monotonic() > deadline:
            assert not missing, f"{missing} never reached {run} ({len(record)} bytes)"
            return record
        time.sleep(0.2)


def wandb_overrides(save_dir: Path, seed: int = 0) -> list[str]:
    return [
        "logger=wandb",
        f"logger.wandb.save_dir={save_dir}",
        "log_images=2",
        "test_after_training=false",
        f"seed={seed}",
    ]


def test_wandb_offline_run_has_masks_and_config(cfg_train, wandb_offline, tmp_path: Path) -> None:
    import wandb

    save_dir = tmp_path / "wandb_save"
    cfg = cfg_train("voc", "inductive", *wandb_overrides(save_dir))
    train(cfg)
    assert wandb.run is None  # the runner finished (and flushed) the run

    (run,) = offline_runs(save_dir)
    media = run / "files" / "media" / "images"
    images = sorted((media / "val").glob("examples_*.png"))
    masks = sorted((media / "mask" / "val").glob("examples_*.mask.png"))
    assert len(images) == 2  # log_images=2 at the single validation (step 2)
    assert len(masks) == 2 * len(images)  # prediction + ground truth per image
    class_ids = set(range(20)) | {255}
    for path in masks:
        assert set(np.unique(np.asarray(Image.open(path))).tolist()) <= class_ids
    for path in images:
        assert np.asarray(Image.open(path).convert("RGB")).shape[2] == 3
    # config and metrics are in the run's record file, with this run's resolved config
    record_with(
        run,
        b"warmup_steps",
        b"prompt_tokens",
        b"val/examples",
        b"val/hIoU",
        b"train/loss",
        str(cfg.paths.data_dir).encode(),
    )
    assert wandb_offline == []  # no Python connection left the machine
    logs = "".join(p.read_text(errors="replace") for p in (run / "logs").glob("*.log"))
    assert "127.0.0.1:9" not in logs


def test_wandb_each_run_in_a_process_gets_its_own_run(cfg_train, wandb_offline, tmp_path: Path) -> None:
    save_dir = tmp_path / "wandb_save"
    for seed in (0, 1):
        train(cfg_train("voc", "inductive", *wandb_overrides(save_dir, seed), name=f"job{seed}"))
    assert len(offline_runs(save_dir)) == 2


@pytest.fixture()
def wandb_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """What the runner sends to W&B: init arguments, logged rows, hyper-parameter updates."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger
    from wandb.sdk.wandb_run import Run

    calls: dict[str, list] = {"init": [], "log": [], "hparams": []}
    init, log, hparams = wandb.init, Run.log, WandbLogger.log_hyperparams

    def record_init(*args, **kwargs):
        calls["init"].append(kwargs)
        return init(*args, **kwargs)

    def record_log(self, data, *args, **kwargs):
        calls["log"].append(dict(data))
        return log(self, data, *args, **kwargs)

    def record_hparams(self, params, *args, **kwargs):
        calls["hparams"].append(params)
        return hparams(self, params, *args, **kwargs)

    monkeypatch.setattr(wandb, "init", record_init)
    monkeypatch.setattr(Run, "log", record_log)
    monkeypatch.setattr(WandbLogger, "log_hyperparams", record_hparams)
    return calls


def test_wandb_runs_are_named_grouped_and_tagged_by_what_differs(
    cfg_train, wandb_offline, wandb_calls, tmp_path: Path
) -> None:
    cfg = cfg_train(
        "voc",
        "inductive",
        *wandb_overrides(tmp_path / "w", seed=3),
        "optimizer.lr=1e-3",
        "trainer.max_steps=4",
    )
    train(cfg)
    (init,) = wandb_calls["init"]
    assert init["name"].startswith("voc-inductive-seed3-") and "optimizer.lr=1e-3" in init["name"]
    assert init["group"] == "voc-inductive"  # a single run: its recipe; a sweep gets one group of its own
    assert set(init["tags"]) == {"voc", "inductive", "seed3", "train"}
    assert len(wandb_calls["hparams"]) == 1 and "optimizer" in wandb_calls["hparams"][0]  # the config, once

    rows = wandb_calls["log"]
    metric_steps = {r["trainer/global_step"] for r in rows if "val/hIoU" in r}
    image_steps = {r["trainer/global_step"] for r in rows if "val/examples" in r}
    assert metric_steps and image_steps == metric_steps  # images beside the metrics of their validation
    train_rows = [r for r in rows if "train/loss" in r]
    assert train_rows  # even a 4-step run logs its training loss
    assert all(0.0 <= r["train/pAcc"] <= 1.0 for r in train_rows)  # a fraction, like val/pAcc
    assert all("train/loss_focal" in r and "train/loss_dice" in r for r in train_rows)  # focal + dice terms


def test_wandb_cross_entropy_logs_no_empty_loss_terms(
    cfg_train, wandb_offline, wandb_calls, tmp_path: Path
) -> None:
    train(cfg_train("voc", "inductive", *wandb_overrides(tmp_path / "w"), "loss.name=cross_entropy"))
    train_rows = [r for r in wandb_calls["log"] if "train/loss" in r]
    assert train_rows and not any("train/loss_focal" in r or "train/loss_dice" in r for r in train_rows)
