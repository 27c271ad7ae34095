"""Killed, terminated, interrupted and requeued runs lose at most the work since the last
checkpoint and, resumed, end with the uninterrupted run's weights and metrics, bit for bit."""

from __future__ import annotations

import signal
from pathlib import Path

from scenarios import STEPS, Run, environment, fake_scontrol, same_metrics, same_weights, signal_at, train


def resume(run: Run, folder: Path) -> Run:
    resumed = train(folder, f"ckpt_path={run.last}")
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert resumed.step() == STEPS
    return resumed


def test_kill_9_mid_epoch_then_resume_is_exact(reference: Run, tmp_path: Path) -> None:
    killed = signal_at(tmp_path / "killed", signal.SIGKILL, at_step=14)
    assert killed.returncode == -signal.SIGKILL
    assert killed.step() == 10  # the newest periodic checkpoint survived the kill and loads
    resumed = resume(killed, tmp_path / "resumed")
    assert same_weights(resumed.weights(), reference.weights())
    assert same_metrics(resumed.metrics(), reference.metrics())


def test_sigterm_saves_the_current_step_and_exits_non_zero(reference: Run, tmp_path: Path) -> None:
    stopped = signal_at(tmp_path / "stopped", signal.SIGTERM, at_step=13)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.output[-3000:]
    step = stopped.step()
    assert step is not None and 13 <= step < STEPS  # saved at the signal, not at the last periodic save
    assert f"ckpt_path={stopped.last}" in stopped.output  # the message says how to resume
    assert stopped.status()["status"] == "interrupted" and stopped.metrics() is None
    resumed = resume(stopped, tmp_path / "resumed")
    assert same_weights(resumed.weights(), reference.weights())
    assert same_metrics(resumed.metrics(), reference.metrics())


def test_sigint_saves_and_exits_non_zero(tmp_path: Path) -> None:
    stopped = signal_at(tmp_path / "stopped", signal.SIGINT, at_step=5)
    assert stopped.returncode == 128 + signal.SIGINT, stopped.output[-3000:]
    assert stopped.step() is not None and stopped.step() >= 5
    assert "ckpt_path=" in stopped.output


def test_slurm_pre_timeout_signal_requeues_and_the_job_resumes_itself(reference: Run, tmp_path: Path) -> None:
    """Under plain ``sbatch`` (no hydra.run.dir): the run folder is ``logs/train/runs/slurm-<job id>``;
    the requeued job (same id, same working folder, same command) finds it and resumes from it."""
    bin_dir, record = fake_scontrol(tmp_path)
    env = environment(SLURM_JOB_ID="4242", PATH=f"{bin_dir}:{environment()['PATH']}")
    user = tmp_path / "user"  # the job's working folder
    runs = user / "logs" / "train" / "runs"
    folder = runs / "slurm-4242"
    first = signal_at(folder, signal.SIGUSR2, 12, env=env, cwd=user)
    assert first.returncode == 128 + signal.SIGUSR2, first.output[-3000:]
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["slurm-4242"]
    assert first.status()["slurm_job_id"] == "4242" and first.status()["status"] == "interrupted"
    assert record.read_text().split() == ["requeue", "4242"]
    saved = first.step()
    assert saved is not None and saved >= 12
    requeued = {**env, "SLURM_RESTART_COUNT": "1"}  # what SLURM sets in a requeued job
    second = train(folder, env=requeued, cwd=user)  # the same command, no ckpt_path
    assert second.returncode == 0, second.output[-3000:]
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["slurm-4242"]  # no second folder
    assert f"resuming from {folder / 'checkpoints' / 'last.ckpt'}" in second.output
    assert second.status()["attempts"] == 2 and second.status()["status"] == "finished"
    assert same_weights(second.weights(), reference.weights())
    assert same_metrics(second.metrics(), reference.metrics())


def test_the_run_folder_is_named_by_the_slurm_job(monkeypatch) -> None:
    """``${zegclip.run_id:}``: ``slurm-<job id>``, ``slurm-<array job>_<task>`` in an array job, else
    the start time and a random part."""
    import re

    from zegclip.engine.resolvers import run_id

    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}", run_id())
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert run_id() == "slurm-4242"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4200")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert run_id() == "slurm-4200_3"
