"""Resuming: a run stopped after a checkpoint and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

import zegclip
import zegclip.engine.train as train_task

# VOC synthetic train set: 3 images; batch 1 -> 3 steps per epoch; validation (and checkpoints) at
# every epoch end; 6 steps in all, the interrupted run stops after the checkpoint at step 3
STEPS, STOP = 6, 3
RESUME_OVERRIDES = [
    "dataset.batch_size=1",
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={STOP}",
    "test_after_training=false",
]
NO_DROPOUT = ["model.prompt_dropout=0", "model.decoder_dropout=0"]


class Recorder(L.Callback):
    """Keeps the final trainable weights in memory; optionally stops training after step ``stop_at``
    (its validation and checkpoint included), like a job killed right after that checkpoint."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.step = -1
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.stop_at is not None and trainer.global_step == self.stop_at:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self.step = trainer.global_step
        self.weights = {
            n: p.detach().clone() for n, p in pl_module.model.named_parameters() if p.requires_grad
        }


def run_with(monkeypatch: pytest.MonkeyPatch, cfg, recorder: Recorder) -> Recorder:
    build = train_task.build_callbacks
    monkeypatch.setattr(
        train_task, "build_callbacks", lambda c, has_unseen, **kw: [*build(c, has_unseen, **kw), recorder]
    )
    train_task.train(cfg)
    monkeypatch.setattr(train_task, "build_callbacks", build)
    return recorder


def interrupted_and_resumed(cfg_train, monkeypatch, *extra: str) -> tuple[Recorder, Recorder, Path]:
    full = run_with(
        monkeypatch, cfg_train("voc", "inductive", *RESUME_OVERRIDES, *extra, name="full"), Recorder()
    )
    stopped_cfg = cfg_train("voc", "inductive", *RESUME_OVERRIDES, *extra, name="stopped")
    stopped = run_with(monkeypatch, stopped_cfg, Recorder(stop_at=STOP))
    assert stopped.step == STOP
    last = Path(stopped_cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed_cfg = cfg_train(
        "voc", "inductive", *RESUME_OVERRIDES, *extra, f"ckpt_path={last}", name="resumed"
    )
    resumed = run_with(monkeypatch, resumed_cfg, Recorder())
    assert full.step == resumed.step == STEPS
    return full, resumed, last


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    different = {k: float((a[k] - b[k]).abs().max()) for k in a if not torch.equal(a[k], b[k])}
    assert not different, f"{len(different)}/{len(a)} tensors differ, e.g. {list(different.items())[:3]}"


def test_resume_without_dropout_is_exact(cfg_train, monkeypatch) -> None:
    """Data order, augmentation, optimizer and schedule states all resume exactly."""
    full, resumed, last = interrupted_and_resumed(cfg_train, monkeypatch, *NO_DROPOUT)
    assert_same_weights(full.weights, resumed.weights)

    # the checkpoint: plain content (weights_only) at the stop step, and usable by zegclip.load
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == STOP
    model = zegclip.load(last)
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    loaded = model.state_dict()
    assert set(state) <= set(loaded)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert model.metadata["setting"] == "inductive" and model.metadata["dataset"] == "voc"


def test_resume_with_dropout_is_exact(cfg_train, monkeypatch) -> None:
    """The default recipe (prompt and decoder dropout 0.1) resumed with a fixed seed on CPU."""
    full, resumed, _ = interrupted_and_resumed(cfg_train, monkeypatch)
    assert_same_weights(full.weights, resumed.weights)


@pytest.mark.parametrize(("max_steps", "val_every"), [(3, 2), (5, 100)])
def test_last_checkpoint_holds_the_final_step(cfg_train, monkeypatch, max_steps: int, val_every: int) -> None:
    """last.ckpt holds the final weights whatever the validation interval: max_steps not a multiple
    of it (the issue's `trainer.max_steps=3`), or a run too short to validate at all."""
    cfg = cfg_train(
        "voc",
        "inductive",
        f"trainer.max_steps={max_steps}",
        f"trainer.val_check_interval={val_every}",
        "dataset.batch_size=1",
        "checkpoint_every_n_steps=0",
        "test_after_training=false",
    )
    recorder = run_with(monkeypatch, cfg, Recorder())
    assert recorder.step == max_steps
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == max_steps
    saved = {
        k.removeprefix("model."): v
        for k, v in ckpt["state_dict"].items()
        if k.removeprefix("model.") in recorder.weights
    }
    assert_same_weights(saved, recorder.weights)


def test_resumed_run_is_independent_of_loader_workers(cfg_train, monkeypatch) -> None:
    """The training stream (order and augmentation) is a function of (seed, epoch, position) only."""
    runs = [
        run_with(
            monkeypatch,
            cfg_train(
                "voc",
                "inductive",
                *RESUME_OVERRIDES,
                *NO_DROPOUT,
                f"dataset.num_workers={w}",
                f"dataset.persistent_workers={w > 0}",
                name=f"w{w}",
            ),
            Recorder(),
        )
        for w in (0, 2)
    ]
    assert_same_weights(runs[0].weights, runs[1].weights)
