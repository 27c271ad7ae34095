"""The transductive recipe in one command, interrupted in either stage and resumed as the message
says (or from the newest periodic checkpoint after ``kill -9``), ends with the uninterrupted run's
weights and metrics, bit for bit, and still reports its inductive stage's checkpoint."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from scenarios import Run, same_metrics, same_weights, signal_at, train

STAGE = 12  # inductive steps; as many transductive steps follow (24 in all)
STAGED = [
    "setting=transductive",
    f"trainer.max_steps={STAGE}",
    "trainer.val_check_interval=12",
    "checkpoint_every_n_steps=5",
]


def stage_weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {
        k: v
        for k, v in state.items()
        if not k.startswith(("model.text_encoder.", "model.image_encoder.vit."))
    }


@pytest.fixture(scope="module")
def staged_reference(tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = train(tmp_path_factory.mktemp("staged") / "run", *STAGED)
    assert run.returncode == 0, run.output[-3000:]
    assert run.step() == 2 * STAGE
    return run


def resume(run: Run, folder: Path) -> Run:
    resumed = train(folder, *STAGED, f"ckpt_path={run.last}")  # the same command plus ckpt_path
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert resumed.step() == 2 * STAGE
    return resumed


def test_sigterm_in_the_inductive_stage_then_resume_is_exact(staged_reference: Run, tmp_path: Path) -> None:
    stopped = signal_at(tmp_path / "stopped", signal.SIGTERM, 5, *STAGED)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.output[-3000:]
    assert stopped.step() is not None and stopped.step() < STAGE  # stopped inside stage 1
    assert f"ckpt_path={stopped.last}" in stopped.output
    resumed = resume(stopped, tmp_path / "resumed")  # crosses the stage boundary itself
    assert same_weights(resumed.weights(), staged_reference.weights())
    assert same_metrics(resumed.metrics(), staged_reference.metrics())
    stage_ckpt = Path(resumed.metrics()["stages"][0]["checkpoint"])
    assert stage_ckpt == resumed.folder / "checkpoints" / "inductive_stage.ckpt"
    assert same_weights(
        stage_weights(stage_ckpt), stage_weights(Path(staged_reference.metrics()["stages"][0]["checkpoint"]))
    )


def test_kill_9_in_the_transductive_stage_then_resume_is_exact(staged_reference: Run, tmp_path: Path) -> None:
    killed = signal_at(tmp_path / "killed", signal.SIGKILL, 19, *STAGED)
    assert killed.returncode == -signal.SIGKILL
    saved = killed.step()
    assert (
        saved is not None and STAGE < saved < 2 * STAGE
    )  # a stage-2 checkpoint: stage 2's optimiser state travels
    resumed = resume(killed, tmp_path / "resumed")
    assert same_weights(resumed.weights(), staged_reference.weights())
    assert same_metrics(resumed.metrics(), staged_reference.metrics())
    # the inductive stage ended in the killed run: its checkpoint there is still the one reported
    assert resumed.metrics()["stages"][0]["checkpoint"] == str(
        killed.folder / "checkpoints" / "inductive_stage.ckpt"
    )
