"""Fault injection on real ``python train.py`` runs of the shapes world (small and fast).

Each scenario starts the training command the README documents as a subprocess, injects one fault
(``kill -9``, SIGTERM, SIGINT, the SLURM pre-timeout signal, a NaN loss, an unwritable checkpoint
folder, a corrupt validation file), resumes the way the error message says where there is
something to resume, and compares the final weights and test metrics with an uninterrupted run of
the same seed. Used by ``tests/faults/`` and by ``benchmarks/reliability.py`` (the README table).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = 40
# 256 training images / batch 8 = 32 steps per epoch: the run crosses an epoch boundary, and the
# periodic checkpoints (every 10 steps) fall mid-epoch
SHORT = [
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=20",
    "checkpoint_every_n_steps=10",
    "trainer.log_every_n_steps=1",
    "+logger.csv.flush_logs_every_n_steps=1",  # the log shows each step at once (to time the faults)
    "trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
    "dataset.batch_size=8",
    "dataset.layout.train_size=256",
    "dataset.layout.val_size=16",
    "dataset.layout.test_size=16",
    "optimizer.warmup_steps=5",
]


@dataclass
class Run:
    """A finished (or killed) ``train.py`` process and its run folder."""

    folder: Path
    returncode: int
    output: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def last(self) -> Path:
        return self.folder / "checkpoints" / "last.ckpt"

    def step(self) -> int | None:
        return (
            int(torch.load(self.last, map_location="cpu", weights_only=True)["global_step"])
            if self.last.is_file()
            else None
        )

    def weights(self) -> dict[str, torch.Tensor]:
        state = torch.load(self.last, map_location="cpu", weights_only=True)["state_dict"]
        return {
            k: v
            for k, v in state.items()
            if not k.startswith(("model.text_encoder.", "model.image_encoder.vit."))
        }

    def metrics(self) -> dict[str, Any] | None:
        path = self.folder / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def status(self) -> dict[str, Any]:
        return json.loads((self.folder / "run.json").read_text())


def environment(**extra: str) -> dict[str, str]:
    """The runs' environment; without ``HYDRA_FULL_ERROR``, which would add a traceback to the one-line
    errors the scenarios check (a bug keeps its traceback either way)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(extra)
    return env


def start(
    folder: Path, *overrides: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """``python train.py <SHORT> <overrides> hydra.run.dir=<folder>`` in the background; with ``cwd``,
    ``python <repo>/train.py <SHORT> <overrides>`` from that folder instead (the default run folder
    under ``cwd/logs``, which ``folder`` names)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = open(_log(folder), "w")  # noqa: SIM115 (closed by finish)
    if cwd is None:
        command = [sys.executable, "train.py", *SHORT, *overrides, f"hydra.run.dir={folder}"]
    else:
        command = [sys.executable, str(REPO_ROOT / "train.py"), *SHORT, *overrides]
    return subprocess.Popen(
        command, cwd=cwd or REPO_ROOT, env=env or environment(), stdout=log, stderr=subprocess.STDOUT
    )


def _log(folder: Path) -> Path:
    return folder.parent / f"{folder.name}.log"


def finish(proc: subprocess.Popen, folder: Path, timeout: float = 600) -> Run:
    proc.wait(timeout=timeout)
    return Run(folder, proc.returncode, _log(folder).read_text())


def train(folder: Path, *overrides: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    return finish(start(folder, *overrides, env=env, cwd=cwd), folder)


def logged_step(folder: Path) -> int:
    """The newest training step in the run's CSV log (logged every step), or -1."""
    files = list((folder / "csv").glob("**/metrics.csv"))
    if not files:
        return -1
    try:
        with open(files[0]) as f:
            steps = [
                int(row["step"]) for row in csv.DictReader(f) if row.get("step") and row.get("train/loss")
            ]
    except (OSError, ValueError, KeyError):
        return -1
    return max(steps, default=-1)


def signal_at(
    folder: Path,
    signum: int,
    at_step: int,
    *overrides: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Run:
    """Start a run and send ``signum`` once its log shows step ``at_step`` (kill -9 included)."""
    proc = start(folder, *overrides, env=env, cwd=cwd)
    deadline = time.time() + 600
    while proc.poll() is None and logged_step(folder) < at_step and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signum)
    return finish(proc, folder)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def same_metrics(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    keys = ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc", "mAcc", "IoU_per_class")
    return a is not None and b is not None and all(a[k] == b[k] for k in keys)


def fake_scontrol(folder: Path) -> tuple[Path, Path]:
    """A stand-in ``scontrol`` that records its arguments; returns (bin folder, record file)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    record = folder / "scontrol_calls.txt"
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{record}"\n')
    script.chmod(0o755)
    return bin_dir, record
