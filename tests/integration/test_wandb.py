"""W&B offline: a short run with validation writes an offline run with mask overlays and the config."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zegclip.runner import train

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
    # config and metrics are in the run's record file
    record = next(run.glob("run-*.wandb")).read_bytes()
    for key in (b"warmup_steps", b"prompt_tokens", b"val/examples", b"val/hIoU", b"train/loss"):
        assert key in record, key
    assert str(cfg.paths.data_dir).encode() in record  # this run's resolved config
    assert wandb_offline == []  # no Python connection left the machine
    logs = "".join(p.read_text(errors="replace") for p in (run / "logs").glob("*.log"))
    assert "127.0.0.1:9" not in logs


def test_wandb_each_run_in_a_process_gets_its_own_run(cfg_train, wandb_offline, tmp_path: Path) -> None:
    save_dir = tmp_path / "wandb_save"
    for seed in (0, 1):
        train(cfg_train("voc", "inductive", *wandb_overrides(save_dir, seed), name=f"job{seed}"))
    assert len(offline_runs(save_dir)) == 2
