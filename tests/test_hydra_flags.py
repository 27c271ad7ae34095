"""Hydra's standard flags answer on every entry point, as a user types them: ``--cfg job``,
``--cfg job --resolve``, ``--cfg all``, ``--info``, ``--help`` and ``-m ... --cfg job`` (which Hydra
itself refuses; zegclip.engine.hydra_flags prints each job's config)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# entry point -> (a key of its config, a two-value sweep over a key it has)
ENTRY_POINTS = {
    "train.py": ("task_name: train", "seed=0,1"),
    "eval.py": ("task_name: eval", "seed=0,1"),
    "predict.py": ("task_name: predict", "alpha=0.3,0.6"),
}


def run(entry: str, *flags: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / entry), *flags],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"python {entry} {' '.join(flags)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )
    assert not list(cwd.iterdir()), "showing a config must not create run folders"
    return proc.stdout


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_cfg_job_and_resolve(entry: str, tmp_path: Path) -> None:
    key, _ = ENTRY_POINTS[entry]
    job = yaml.safe_load(run(entry, "--cfg", "job", cwd=tmp_path))
    assert key.split(": ")[1] == job["task_name"] and "hydra" not in job
    resolved_text = run(entry, "--cfg", "job", "--resolve", cwd=tmp_path)
    assert "${" not in resolved_text  # every interpolation resolved (the class-list resolvers included)
    resolved = yaml.safe_load(resolved_text)
    if entry != "predict.py":
        assert (
            resolved["dataset"]["class_names"][0] == "red circle"
            and len(resolved["dataset"]["class_names"]) == 16
        )


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_cfg_all_shows_the_hydra_node(entry: str, tmp_path: Path) -> None:
    config = yaml.safe_load(run(entry, "--cfg", "all", cwd=tmp_path))
    assert "hydra" in config and config["hydra"]["job"]["chdir"] is False
    assert config["task_name"] == ENTRY_POINTS[entry][0].split(": ")[1]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_info_and_help(entry: str, tmp_path: Path) -> None:
    info = run(entry, "--info", cwd=tmp_path)
    assert "Config search path" in info and "Defaults List" in info
    help_text = run(entry, "--help", cwd=tmp_path)
    assert "--hydra-help" in help_text and ENTRY_POINTS[entry][0] in help_text


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_multirun_cfg_job_shows_every_job(entry: str, tmp_path: Path) -> None:
    _, sweep = ENTRY_POINTS[entry]
    key, values = sweep.split("=")
    for flags in (["--cfg", "job"], ["--cfg", "job", "--resolve"]):
        text = run(entry, "-m", sweep, *flags, cwd=tmp_path)
        documents = re.split(r"^# job \d+ of 2: .*$", text, flags=re.M)[1:]
        assert len(documents) == 2, text[:2000]
        assert [yaml.safe_load(d)[key] for d in documents] == [yaml.safe_load(v) for v in values.split(",")]


def test_multirun_cfg_job_expands_the_product_in_hydras_order(tmp_path: Path) -> None:
    text = run("train.py", "-m", "seed=0,1", "dataset=shapes,shapes_hard", "--cfg", "job", cwd=tmp_path)
    headers = re.findall(r"^# job \d+ of 4: (.*)$", text, flags=re.M)
    assert headers == [
        "seed=0 dataset=shapes",
        "seed=0 dataset=shapes_hard",
        "seed=1 dataset=shapes",
        "seed=1 dataset=shapes_hard",
    ]


def test_multirun_cfg_job_of_a_search_shows_its_fixed_configuration(tmp_path: Path) -> None:
    """An Optuna study chooses its trials while it runs: the fixed part of every trial's config, once."""
    text = run("train.py", "-m", "hparams_search=shapes_optuna", "--cfg", "job", cwd=tmp_path)
    assert "chooses each job's values while it runs" in text.splitlines()[0]
    (document,) = re.split(r"^# job \d+ of 1: .*$", text, flags=re.M)[1:]
    assert yaml.safe_load(document)["optimized_metric"] == "tune/hIoU"
