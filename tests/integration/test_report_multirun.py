"""``python train.py -m ...`` ends with the sweep report
(zegclip.engine.report.callback.SweepReportCallback)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .helpers import REPO_ROOT, read_metrics, train_overrides

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "COLUMNS": "200"}


def multirun(
    sweep: Path, tmp_path: Path, data_dir: Path, setting: str, *extra: str
) -> subprocess.CompletedProcess:
    overrides = train_overrides(
        "voc", setting, data_dir, f"hydra.sweep.dir={sweep}", f"paths.log_dir={tmp_path}", *extra
    )
    return subprocess.run(
        [sys.executable, "train.py", "-m", *overrides],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=420,
    )


def test_multirun_writes_the_sweep_report(data_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = multirun(sweep, tmp_path, data_dir, "inductive", "seed=0,1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Sweep report" in proc.stdout and "report written to" in proc.stdout
    jobs = [read_metrics(sweep / name) for name in ("0", "1")]
    with (sweep / "report.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1  # seed=0 and seed=1 are one group
    row = rows[0]
    assert row["n"] == "2" and row["seeds"] == "0,1"
    assert "seed=" not in row["overrides"] and "setting=inductive" in row["overrides"]
    for key in ("mIoU_seen", "mIoU", "pAcc"):
        values = np.array([job[key] for job in jobs])
        assert float(row[f"{key}_mean"]) == pytest.approx(values.mean(), abs=1e-12)
        assert float(row[f"{key}_std"]) == pytest.approx(values.std(ddof=1), abs=1e-12)
    md = (sweep / "report.md").read_text()
    assert "- Jobs: 2 expected, 2 finished, 0 failed or missing." in md
    assert json.loads((sweep / "0" / "job_status.json").read_text())["status"] == "COMPLETED"


def test_failed_jobs_are_reported_not_dropped(data_dir: Path, tmp_path: Path) -> None:
    """Both jobs fail at once (transductive with neither an inductive stage nor init_from): Hydra exits
    with the error and never calls on_multirun_end, yet the report written after each job lists them
    with the reason."""
    sweep = tmp_path / "sweep"
    proc = multirun(sweep, tmp_path, data_dir, "transductive", "seed=0,1", "inductive_stage.steps=0")
    assert proc.returncode != 0
    md = (sweep / "report.md").read_text()
    assert "- Jobs: 2 expected, 0 finished, 2 failed or missing." in md
    failed = md.split("## Failed or missing jobs")[1]
    reason = "setting=transductive starts from inductive weights"
    assert failed.count(reason) == 2
    lines = [ln for ln in failed.splitlines() if reason in ln]
    seeds = [o.strip("`") for ln in lines for o in ln.split() if o.strip("`").startswith("seed=")]
    assert sorted(seeds) == ["seed=0", "seed=1"]  # each failed job listed with what tells it apart
