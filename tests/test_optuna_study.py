"""``python train.py -m hparams_search=shapes_optuna``: an Optuna study on the tuning split that an
interrupted search continues with the same command, whose trials share one W&B group and log the
objective under its own name, whose report lists every trial and the best one, and whose best
configuration one command re-trains on the real split with seeds 0, 1, 2; and no sweep optimises a
test-split metric in a zero-shot setting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "trainer.max_steps=8",
    "trainer.val_check_interval=4",
    "dataset.batch_size=8",
    "dataset.layout.train_size=64",
    "dataset.layout.val_size=16",
    "dataset.layout.test_size=16",
]
SEARCH = ["-m", "hparams_search=shapes_optuna", "hydra.sweeper.n_trials=3", "logger=wandb", *TINY]


def env(tmp: Path) -> dict[str, str]:
    wandb = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_BASE_URL": "http://127.0.0.1:9",
        "WANDB_DIR": str(tmp / "wdir"),
        "WANDB_CACHE_DIR": str(tmp / "wcache"),
        "WANDB_CONFIG_DIR": str(tmp / "wconfig"),
        "WANDB_DATA_DIR": str(tmp / "wdata"),
    }
    base = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    return {**base, **wandb, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        env=env(cwd),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A study interrupted during its second trial, then continued with the same command."""
    user = tmp_path_factory.mktemp("user")
    folder = user / "logs" / "train" / "optuna" / "shapes_inductive"
    with open(user / "first.log", "w") as log:
        first = subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *SEARCH],
            cwd=user,
            env=env(user),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started = folder / "1" / "config_resolved.yaml"  # written just before the trial's fit begins
        deadline = time.time() + 400
        while not started.exists():
            assert first.poll() is None, (user / "first.log").read_text()[-3000:]
            assert time.time() < deadline
            time.sleep(0.2)
        first.send_signal(signal.SIGINT)  # the run stops at the end of its next step
        first_code = first.wait(timeout=300)
    second = train(SEARCH, user)
    return {
        "user": user,
        "folder": folder,
        "first": (first_code, (user / "first.log").read_text()),
        "second": second,
    }


def load(folder: Path):
    import optuna

    return optuna.load_study(study_name="shapes_inductive", storage=f"sqlite:///{folder}/optuna.db")


def test_an_interrupted_search_continues_with_the_same_command(study: dict) -> None:
    import optuna

    code, log = study["first"]
    assert code != 0 and "continue study shapes_inductive with the same command" in log
    second, folder = study["second"], study["folder"]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert (
        "continuing study shapes_inductive: 1 of 3 trials finished; interrupted trial(s) [1]" in second.stdout
    )
    trials = load(folder).trials
    states = [t.state for t in trials]
    done = optuna.trial.TrialState.COMPLETE
    assert states == [done, optuna.trial.TrialState.FAIL, done, done]
    assert trials[1].user_attrs["interrupted"] and trials[2].params == trials[1].params  # tried again
    assert trials[3].params != trials[0].params  # the sampler did not start over
    assert sorted(p.name for p in folder.iterdir() if p.name.isdigit()) == [
        "0",
        "1",
        "2",
        "3",
    ]  # no folder reused
    for number in (0, 2, 3):
        metrics = (folder / str(number) / "metrics.json").read_text()
        assert '"split": "tune"' in metrics and '"name": "tune/hIoU"' in metrics
    # the same command once more: nothing left to run
    again = train(SEARCH, study["user"])
    assert again.returncode == 0 and "has its 3 trials" in again.stdout
    assert len(load(folder).trials) == 4


def test_the_report_lists_every_trial_and_the_best(study: dict) -> None:
    folder = study["folder"]
    report = (folder / "report.md").read_text()
    section = report.split("## Optuna study `shapes_inductive`", 1)[1]
    trials = load(folder).trials
    for t in trials:
        assert f"\n| {t.number} | " in section
    assert "failed (interrupted" in section
    best = load(folder).best_trial
    assert f"**Best trial: #{best.number}**" in section and f"{100 * best.value:.1f}" in section
    overrides = (folder / "best_overrides.txt").read_text().split()
    assert overrides[:2] == ["dataset=shapes", "setting=inductive"]
    assert not any(
        o.startswith(("hparams_search", "tuning", "optimized_metric", "hydra", "seed")) for o in overrides
    )
    for key, value in best.params.items():
        assert f"{key}={value}" in overrides
    assert (
        "python train.py -m seed=0,1,2 $(cat logs/train/optuna/shapes_inductive/best_overrides.txt)"
        in section
    )


def test_trials_share_one_wandb_group_and_log_the_objective_by_name(study: dict) -> None:
    folder = study["folder"]
    records = sorted(folder.glob("*/wandb/offline-run-*/run-*.wandb"))
    assert len(records) == 4  # one W&B run per trial, the interrupted one included
    for path in records:
        data = path.read_bytes()
        assert b"sweep-shapes_inductive" in data  # the group: one per study, across both invocations
    finished = [p for p in records if p.parts[-4] in ("0", "2", "3")]
    assert all(b"tune/hIoU" in p.read_bytes() and b"test/hIoU" not in p.read_bytes() for p in finished)


def test_one_command_retrains_the_best_trial_with_three_seeds(study: dict) -> None:
    user = study["user"]
    command = "python train.py -m seed=0,1,2 $(cat logs/train/optuna/shapes_inductive/best_overrides.txt)"
    proc = subprocess.run(
        ["bash", "-c", command.replace("train.py", str(REPO / "train.py"))],
        cwd=user,
        env={**env(user), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    (sweep,) = (user / "logs" / "train" / "multiruns").iterdir()  # the default sweep folder
    jobs = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    metrics = [json.loads((j / "metrics.json").read_text()) for j in jobs]
    assert [m["seed"] for m in metrics] == [0, 1, 2] and all(m["split"] == "test" for m in metrics)
    assert all(m["dataset"] == "shapes" and len(m["IoU_per_class"]) == 16 for m in metrics)  # the real split
    report = (sweep / "report.md").read_text()
    assert "| 3 | 0,1,2 |" in report and " ± " in report


def test_a_study_is_not_continued_by_another_search(study: dict) -> None:
    proc = train([*SEARCH, "optimizer.betas=[0.9,0.99]"], study["user"])
    assert proc.returncode != 0 and "was started by a search with the overrides" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "hparams_search=shapes_optuna", "optimized_metric=test/hIoU"], "never reads the test split"),
        (
            [
                "-m",
                "hydra/sweeper=zegclip_optuna",
                "hydra.sweeper.study_name=leak",
                "optimized_metric=test/hIoU",
            ],
            "would tune the inductive zero-shot method on its test split",
        ),
        (
            ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1"],
            "optimized_metric is null",
        ),  # the stock plugin
    ],
)
def test_no_sweep_optimises_the_test_split(args: list[str], message: str, tmp_path: Path) -> None:
    proc = train([*args, *TINY], tmp_path)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not list(tmp_path.glob("logs/**/checkpoints/*.ckpt"))  # refused before anything trained


def test_a_diverging_trial_fails_and_the_search_goes_on(tmp_path: Path) -> None:
    # lr 1e30: the loss is NaN within a few steps (NonFiniteLossError) in every trial
    proc = train(
        ["-m", "hparams_search=shapes_optuna", "hydra.sweeper.n_trials=2", "optimizer.lr=1e30", *TINY],
        tmp_path,
    )
    assert (
        proc.returncode != 0 and "no trial of study shapes_inductive completed" in proc.stdout + proc.stderr
    )
    folder = tmp_path / "logs" / "train" / "optuna" / "shapes_inductive"
    assert [t.state.name for t in load(folder).trials] == [
        "FAIL",
        "FAIL",
    ]  # the second ran after the first failed
    section = (folder / "report.md").read_text().split("## Optuna study", 1)[1]
    assert section.count("| failed: NonFiniteLossError: the training loss is nan") == 2
