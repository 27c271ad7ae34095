"""``python -m zegclip.report``: grouping by overrides without the seed, mean ± sample std against
numpy, failed and missing jobs listed, the CLI and the Hydra callback's failure handling."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from zegclip.apps.sweep_report import main as report_main
from zegclip.engine.report.callback import SweepReportCallback
from zegclip.engine.report.jobs import collect
from zegclip.engine.report.render import markdown, run
from zegclip.engine.report.stats import fmt, stat

REPO_ROOT = Path(__file__).resolve().parents[1]
METRICS = ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc", "mAcc")
CLASSES = ["cat", "dog", "bird"]
COMMON_TASK = ["model=tiny", "hydra.job.chdir=false", "paths.data_dir=/data"]  # as typed
COMMON = ["model=tiny", "hydra.job.chdir=False", "paths.data_dir=/data"]  # as Hydra's sweeper writes them


def write_job(
    folder: Path, overrides: list[str], seed: int, metrics: dict | None, in_json: bool = True
) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
    (folder / "config_resolved.yaml").write_text(
        OmegaConf.to_yaml({"seed": seed, "model": {"prompt_tokens": 3}})
    )
    if metrics is not None:
        payload = {**metrics, "dataset": "voc", "setting": "inductive", "checkpoint": "x.ckpt"}
        if in_json:  # what metrics.json records (older files lack seed / overrides: read from .hydra)
            payload.update(seed=seed, overrides=overrides)
        (folder / "metrics.json").write_text(json.dumps(payload))


def fake_metrics(rng: np.random.Generator) -> dict:
    values = {k: float(rng.uniform(0.2, 0.9)) for k in METRICS}
    values["IoU_per_class"] = {name: float(rng.uniform(0, 1)) for name in CLASSES}
    return values


@pytest.fixture()
def sweep(tmp_path: Path) -> dict:
    """A multirun: ``seed=0,1,2 optimizer.lr=0.1,0.2``. Group lr=0.1: 3 finished jobs; lr=0.2:
    seeds 0 and 1 finished, seed 2 failed (a job folder without metrics.json)."""
    root = tmp_path / "multiruns" / "2026-01-01_00-00-00"
    root.mkdir(parents=True)
    task = ["seed=0,1,2", "optimizer.lr=0.1,0.2", *COMMON_TASK]
    OmegaConf.save(
        OmegaConf.create(
            {
                "hydra": {
                    "overrides": {"task": task},
                    "sweeper": {
                        "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                        "max_batch_size": None,
                        "params": None,
                    },
                },
                "seed": 0,
            }
        ),
        root / "multirun.yaml",
    )
    rng = np.random.default_rng(0)
    values: dict[str, list[dict]] = {"0.1": [], "0.2": []}
    number = 0
    for seed in (0, 1, 2):  # Hydra's order: the product of the sweeps, first key slowest
        for lr in ("0.1", "0.2"):
            overrides = [f"seed={seed}", f"optimizer.lr={lr}", *COMMON]
            failed = lr == "0.2" and seed == 2
            metrics = None if failed else fake_metrics(rng)
            if metrics is not None and lr == "0.1" and seed == 2:
                metrics["mIoU_unseen"] = None  # undefined in one job: n=2 for it in that group
            write_job(root / str(number), overrides, seed, metrics, in_json=number != 0)
            if failed:
                (root / str(number) / "job_status.json").write_text(
                    json.dumps({"status": "FAILED", "error": "RuntimeError: CUDA out of memory"})
                )
            else:
                values[lr].append(metrics)
            number += 1
    return {"root": root, "values": values}


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as handle:
        return {row["overrides"]: row for row in csv.DictReader(handle)}


def test_report_numbers_match_numpy(sweep: dict) -> None:
    root = sweep["root"]
    written = run([root], per_class=True, quiet=True)
    assert written == {"md": root / "report.md", "csv": root / "report.csv"}
    rows = read_csv(root / "report.csv")
    key = {lr: " ".join(sorted([f"optimizer.lr={lr}", "model=tiny"])) for lr in ("0.1", "0.2")}
    assert set(rows) == set(key.values())  # seed, hydra.* and paths.* are not group variables
    for lr, jobs in sweep["values"].items():
        row = rows[key[lr]]
        assert int(row["n"]) == len(jobs) == (3 if lr == "0.1" else 2)
        assert row["seeds"] == ("0,1,2" if lr == "0.1" else "0,1")
        assert row["group"] == f"optimizer.lr={lr}"  # model=tiny is common to both groups
        for metric in METRICS:
            present = np.array([j[metric] for j in jobs if j[metric] is not None])
            assert float(row[f"{metric}_mean"]) == pytest.approx(present.mean(), abs=1e-15)
            assert float(row[f"{metric}_std"]) == pytest.approx(present.std(ddof=1), abs=1e-15)
            assert int(row[f"{metric}_n"]) == len(present)
        for name in CLASSES:
            per_class = np.array([j["IoU_per_class"][name] for j in jobs])
            assert float(row[f"IoU/{name}_mean"]) == pytest.approx(per_class.mean(), abs=1e-15)
            assert float(row[f"IoU/{name}_std"]) == pytest.approx(per_class.std(ddof=1), abs=1e-15)
    assert int(rows[key["0.1"]]["mIoU_unseen_n"]) == 2

    md = (root / "report.md").read_text()
    jobs = sweep["values"]["0.1"]
    hiou = np.array([j["hIoU"] for j in jobs])
    assert f"{100 * hiou.mean():.1f} ± {100 * hiou.std(ddof=1):.1f}" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| `optimizer.lr=0.1`"))
    assert line.split(" | ")[1:3] == ["3", "0,1,2"]
    assert line.count("(n=2)") == 1  # mIoU(U): defined in 2 of the 3 jobs
    assert "- Jobs: 6 expected, 5 finished, 1 failed or missing." in md
    assert "`model=tiny`" in next(ln for ln in md.splitlines() if ln.startswith("- Overrides of every job"))
    failed = md.split("## Failed or missing jobs")[1]
    assert "`5`" in failed and "seed=2 optimizer.lr=0.2" in failed and "CUDA out of memory" in failed
    per_class = md.split("## IoU per class (%)")[1]
    assert all(f"| {name} |" in per_class for name in CLASSES)


def test_missing_job_folder_and_log_reason(sweep: dict) -> None:
    root = sweep["root"]
    import shutil

    shutil.rmtree(root / "3")  # seed=1 lr=0.2 never started
    (root / "5" / "job_status.json").unlink()
    (root / "5" / "train.log").write_text("epoch 0\n\nKilled by the OOM killer\n")
    rep = collect([root])
    assert [m.overrides for m in rep.missing] == [["seed=1", "optimizer.lr=0.2", *COMMON]]
    assert rep.missing[0].name == "#3" and "not started" in rep.missing[0].reason
    assert [j.name for j in rep.failed] == ["5"]
    assert "Killed by the OOM killer" in rep.failed[0].reason
    md = markdown(rep)
    assert "- Jobs: 6 expected, 4 finished, 2 failed or missing." in md
    b = next(g for g in rep.groups if "optimizer.lr=0.2" in g.key)
    assert len(b.finished) == 1 and "± -" in md  # one value: no std


def test_run_folders_without_a_sweep(tmp_path: Path) -> None:
    """Single run folders (python train.py seed=N, three times) form one group; --out elsewhere."""
    rng = np.random.default_rng(1)
    runs = []
    for seed in range(3):
        metrics = fake_metrics(rng)
        write_job(tmp_path / "runs" / f"run{seed}", [f"seed={seed}", "dataset=voc"], seed, metrics)
        runs.append(metrics)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "zegclip.report",
            *(str(tmp_path / "runs" / f"run{s}") for s in range(3)),
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Sweep report" in proc.stdout and "dataset=voc" in proc.stdout
    rows = read_csv(out / "report.csv")
    assert list(rows) == ["dataset=voc"] and rows["dataset=voc"]["n"] == "3"
    assert float(rows["dataset=voc"]["mIoU_unseen_mean"]) == pytest.approx(
        np.mean([r["mIoU_unseen"] for r in runs])
    )
    # a parent folder holding the runs gives the same groups
    assert [g.key for g in collect([tmp_path / "runs"]).groups] == [("dataset=voc",)]


def test_ignored_keys_do_not_split_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Transductive runs from per-seed inductive checkpoints: ``--ignore init_from`` puts them in one
    group; logger settings never split groups."""
    rng = np.random.default_rng(2)
    for seed in range(2):
        overrides = [
            f"seed={seed}",
            "setting=transductive",
            f"init_from=/runs/ind{seed}/last.ckpt",
            f"logger.wandb.name=run{seed}",
            "+hydra/launcher=slurm",
        ]
        write_job(tmp_path / f"run{seed}", overrides, seed, fake_metrics(rng))
    assert len(collect([tmp_path]).groups) == 2
    rep = collect([tmp_path], ignore=["init_from"])
    assert [g.key for g in rep.groups] == [("setting=transductive",)] and len(rep.groups[0].finished) == 2
    assert report_main([str(tmp_path), "--ignore", "init_from", "--out", str(tmp_path / "out")]) == 0
    with (tmp_path / "out" / "report.csv").open() as handle:
        assert [row["n"] for row in csv.DictReader(handle)] == ["2"]
    capsys.readouterr()


def test_cli_errors_name_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "nowhere" in err and "is not a folder" in err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(tmp_path / "empty")])
    assert exit_info.value.code == 2 and "no runs found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        report_main(["--help"])
    help_text = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--per-class" in help_text and "--out" in help_text


def test_stat_sample_std() -> None:
    s = stat([0.5, None, 0.7, float("nan"), 0.6])
    assert s.n == 3 and s.mean == pytest.approx(0.6) and s.std == pytest.approx(0.1)
    one = stat([0.4])
    assert one.n == 1 and np.isnan(one.std)
    assert fmt(one, 1) == "40.0 ± -" and fmt(stat([]), 2) == "-"


def test_callback_never_raises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken sweep folder or config prints a warning; the sweep's outcome is left alone."""
    callback = SweepReportCallback()
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "absent")}}})
    callback.on_multirun_end(config)
    bad = OmegaConf.create({"hydra": {"sweep": {"dir": "${oc.env:ZEGCLIP_NO_SUCH_VARIABLE}"}}})
    callback.on_multirun_end(bad)
    from hydra.types import RunMode

    job = OmegaConf.create(
        {"hydra": {"mode": RunMode.MULTIRUN, "runtime": {"output_dir": "${oc.env:ZEGCLIP_NO_SUCH_VARIABLE}"}}}
    )
    callback.on_job_end(job, SimpleNamespace(status=None))
    err = capsys.readouterr().err
    assert "no multirun folder" in err and "sweep report failed" in err and "not updated" in err


def test_failure_reason_reads_the_runs_own_record(tmp_path):
    from zegclip.engine.report.failures import failure_reason

    failed, killed = tmp_path / "failed", tmp_path / "killed"
    for folder in (failed, killed):
        folder.mkdir()
    (failed / "run.json").write_text(
        json.dumps({"status": "failed", "error": "NonFiniteLossError: nan at step 3"})
    )
    (killed / "run.json").write_text(json.dumps({"status": "running", "pid": 4242, "host": "node1"}))
    assert failure_reason(failed) == "failed: NonFiniteLossError: nan at step 3"
    assert "running (pid 4242 on node1)" in failure_reason(killed)
