"""Transductive setting: pseudo-labels on real datamodule batches, initialisation from the inductive run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from zegclip.common.constants import IGNORE_INDEX
from zegclip.engine.builders import build_module
from zegclip.engine.train import train
from zegclip.model.labels import transductive_targets
from zegclip.training.module import ZegCLIPModule

from .helpers import REPO_ROOT, TINY_OVERRIDES, one_torch_thread, read_metrics

IGNORE = IGNORE_INDEX


@pytest.fixture()
def voc_transductive(runs, cfg_train):
    """A transductive module initialised from the VOC inductive run and one batch of all 3 training images."""
    cfg = cfg_train("voc", "transductive", f"init_from={runs.last_ckpt('voc')}", "dataset.batch_size=3")
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    module = build_module(cfg, datamodule)
    return module, batch


def _check_targets(labels: torch.Tensor, targets: torch.Tensor, seen: list[int], unseen: list[int]) -> None:
    is_seen = torch.isin(labels, torch.tensor(seen))
    is_unseen = torch.isin(labels, torch.tensor(unseen))
    assert is_unseen.any() and is_seen.any() and (labels == IGNORE).any()  # the batch covers all cases
    assert targets.shape == labels.shape
    assert torch.equal(targets[is_seen], labels[is_seen])  # seen pixels keep their label
    assert (targets[labels == IGNORE] == IGNORE).all()  # ignore stays ignore
    assert torch.isin(targets[is_unseen], torch.tensor(unseen)).all()  # pseudo-labels: unseen ids only
    # pseudo-labels are assigned nowhere else: every pixel whose target changed was an unseen pixel
    assert not (targets != labels)[~is_unseen].any()


def test_training_step_pseudo_labels(voc_transductive) -> None:
    module, batch = voc_transductive
    captured = {}
    criterion_forward = module.criterion.forward

    def spy(pred, targets):
        captured["pred"], captured["targets"] = pred.detach(), targets
        return criterion_forward(pred, targets)

    module.criterion.forward = spy
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)

    labels, targets = batch["label"], captured["targets"]
    assert module.setting == "transductive"
    assert captured["pred"].shape[1] == len(module.class_names)  # the text set is every class
    _check_targets(labels, targets, module.seen, module.unseen)
    # the pseudo-label is the unseen class with the highest sigmoid score (scores resized to the label)
    logits = F.interpolate(captured["pred"], size=labels.shape[-2:], mode="bilinear", align_corners=False)
    unseen = torch.tensor(module.unseen)
    expected = unseen[logits[:, unseen].sigmoid().argmax(dim=1)]
    is_unseen = torch.isin(labels, unseen)
    assert torch.equal(targets[is_unseen], expected[is_unseen])


def test_pseudo_labels_never_take_seen_classes(voc_transductive) -> None:
    """Even where a seen class scores far higher, an unseen pixel gets an unseen class."""
    module, batch = voc_transductive
    labels = batch["label"]
    b, (h, w) = labels.shape[0], labels.shape[-2:]
    logits = torch.randn(
        b, len(module.class_names), h // 4, w // 4, generator=torch.Generator().manual_seed(0)
    )
    logits[:, module.seen] += 20.0
    targets = transductive_targets(labels, logits, module.unseen)
    _check_targets(labels, targets, module.seen, module.unseen)
    # with no seen competition, the argmax follows the logits: one unseen class dominating wins everywhere
    logits[:, module.unseen[2]] += 50.0
    targets = transductive_targets(labels, logits, module.unseen)
    assert (targets[torch.isin(labels, torch.tensor(module.unseen))] == module.unseen[2]).all()


def test_init_from_loads_the_inductive_weights(runs, voc_transductive) -> None:
    module, _ = voc_transductive
    state = torch.load(runs.last_ckpt("voc"), map_location="cpu", weights_only=True)["state_dict"]
    trainable = {n: p for n, p in module.model.named_parameters() if p.requires_grad}
    assert any(n.startswith("decoder.") for n in trainable) and any("prompt" in n for n in trainable)
    for name, param in trainable.items():
        assert torch.equal(param.detach(), state[f"model.{name}"]), name


def test_transductive_in_one_command_runs_both_stages(cfg_train, monkeypatch) -> None:
    """Without init_from: K inductive steps (seen text set, unseen pixels ignored), the inductive weights
    kept as their own checkpoint, then K transductive steps (all classes, fresh optimiser state), then
    the test of the final weights; metrics.json records both stages."""
    steps = []
    original = ZegCLIPModule.training_step

    def spy(self, batch, batch_idx):
        setting = self.stage_setting(self.global_step)
        moments = len(self.trainer.optimizers[0].state)  # AdamW's per-parameter state (0: fresh)
        steps.append((self.global_step, setting, len(self.train_classes(setting)), moments))
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ZegCLIPModule, "training_step", spy)
    cfg = cfg_train("voc", "transductive", "trainer.max_steps=2", name="staged")
    with one_torch_thread():
        summary = train(cfg)
    run = Path(cfg.paths.output_dir)
    n_seen, n_all = 15, 20
    assert [(s, setting, classes) for s, setting, classes, _ in steps] == [
        (0, "inductive", n_seen),
        (1, "inductive", n_seen),
        (2, "transductive", n_all),
        (3, "transductive", n_all),
    ]
    assert steps[1][3] > 0 and steps[2][3] == 0  # the optimiser starts stage 2 fresh (official load_from)
    stage_ckpt = torch.load(
        run / "checkpoints" / "inductive_stage.ckpt", map_location="cpu", weights_only=True
    )
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (stage_ckpt["global_step"], last["global_step"]) == (2, 4)
    meta = stage_ckpt["hyper_parameters"]["metadata"]
    assert (meta["setting"], meta["seen_bias"]) == (
        "inductive",
        0.1,
    )  # loads and evaluates as an inductive model
    assert last["hyper_parameters"]["metadata"]["setting"] == "transductive"
    metrics = read_metrics(run)
    assert metrics["setting"] == "transductive" and metrics["weights"]["step"] == 4
    assert metrics["stages"] == [
        {
            "setting": "inductive",
            "first_step": 1,
            "last_step": 2,
            "schedule_steps": 4,
            "checkpoint": str(run / "checkpoints" / "inductive_stage.ckpt"),
        },
        {"setting": "transductive", "first_step": 3, "last_step": 4},
    ]
    assert summary["hIoU"] == metrics["hIoU"]


def test_transductive_stage_two_only_with_init_from(runs) -> None:
    """init_from keeps the stage-two-only run: max_steps transductive steps, no inductive stage."""
    run = runs.get("voc", "transductive")
    last = torch.load(run["dir"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 2
    assert not (run["dir"] / "checkpoints" / "inductive_stage.ckpt").exists()
    assert "stages" not in read_metrics(run["dir"])


def test_transductive_without_any_inductive_weights_fails_clearly(cfg_train) -> None:
    cfg = cfg_train("voc", "transductive", "inductive_stage.steps=0")
    with pytest.raises(ValueError, match="init_from"):
        train(cfg)


def test_init_from_of_another_architecture_fails_clearly(runs, cfg_train) -> None:
    """VOC's 10 prompt tokens do not fit COCO-Stuff's 100."""
    cfg = cfg_train("coco", "transductive", f"init_from={runs.last_ckpt('voc')}")
    with pytest.raises(ValueError, match="does not fit"):
        build_module(cfg, instantiate(cfg.dataset))


def test_headline_command_on_the_coco_layout(data_dir, tmp_path) -> None:
    """`python train.py setting=transductive dataset=coco`, as written, plus the tiny-run overrides and the
    data folder (a synthetic COCO-Stuff tree): both stages, then the test, from a fresh working folder."""
    workdir = tmp_path / "user"
    workdir.mkdir()
    command = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        "setting=transductive",
        "dataset=coco",
        f"paths.data_dir={data_dir}",
        *TINY_OVERRIDES,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = (workdir / "logs" / "train" / "runs").iterdir()
    metrics = read_metrics(run)
    assert metrics["dataset"] == "coco" and metrics["setting"] == "transductive"
    assert [s["setting"] for s in metrics["stages"]] == ["inductive", "transductive"]
    assert (run / "checkpoints" / "inductive_stage.ckpt").is_file()
    assert metrics["weights"]["step"] == 4  # trainer.max_steps=2: 2 inductive + 2 transductive steps
    assert "stage 1 (inductive) done at step 2" in proc.stdout
