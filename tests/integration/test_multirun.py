"""``python train.py -m seed=0,1 ...`` with the default folders: two jobs, two folders, each with its
config, checkpoint and metrics (the seed and overrides recorded), under one sweep folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .helpers import REPO_ROOT, read_metrics, train_overrides


def test_multirun_writes_one_folder_per_job(data_dir: Path, tmp_path: Path) -> None:
    overrides = train_overrides("voc", "inductive", data_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), "-m", "seed=0,1", *overrides],
        cwd=tmp_path,  # the default folders: <cwd>/logs/train/multiruns/<run id>/<job>
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    assert (sweep / "multirun.yaml").is_file()
    weights = []
    for seed, job in enumerate(jobs):
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert config.seed == seed
        assert (job / ".hydra" / "overrides.yaml").is_file()
        # the run folder is the job's own: checkpoints, metrics, logs, resolved config
        resolved = OmegaConf.load(job / "config_resolved.yaml")
        assert resolved.paths.output_dir == str(job) and resolved.paths.root_dir == str(tmp_path)
        last = job / "checkpoints" / "last.ckpt"
        assert last.is_file()
        assert (job / "csv" / "metrics.csv").is_file()
        metrics = read_metrics(job)
        assert metrics["dataset"] == "voc" and metrics["weights"]["checkpoint"] == str(last)
        assert metrics["seed"] == seed and f"seed={seed}" in metrics["overrides"]
        state = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
        weights.append(state["model.image_encoder.prompt_embeddings"])
    assert not torch.equal(weights[0], weights[1])  # different seeds, different runs
