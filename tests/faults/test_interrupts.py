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
    bin_dir, record = fake_scontrol(tmp_path)
    env = environment(SLURM_JOB_ID="4242", PATH=f"{bin_dir}:{environment()['PATH']}")
    folder = tmp_path / "job"  # submitit reruns a requeued job in the same folder
    first = signal_at(folder, signal.SIGUSR2, 12, env=env)
    assert first.returncode == 128 + signal.SIGUSR2, first.output[-3000:]
    assert record.read_text().split() == ["requeue", "4242"]
    saved = first.step()
    assert saved is not None and saved >= 12
    second = train(folder, env=env)  # the requeued job: same command, same folder, no ckpt_path
    assert second.returncode == 0, second.output[-3000:]
    assert f"resuming from {folder / 'checkpoints' / 'last.ckpt'}" in second.output
    assert second.status()["attempts"] == 2
    assert same_weights(second.weights(), reference.weights())
    assert same_metrics(second.metrics(), reference.metrics())
