"""Transductive setting: pseudo-labels on real datamodule batches, initialisation from the inductive run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from zegclip.constants import IGNORE_INDEX
from zegclip.model.labels import transductive_targets
from zegclip.runner import build_module, train

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


def test_transductive_without_init_from_fails_clearly(cfg_train) -> None:
    cfg = cfg_train("voc", "transductive")
    with pytest.raises(ValueError, match="init_from"):
        train(cfg)


def test_init_from_of_another_architecture_fails_clearly(runs, cfg_train) -> None:
    """VOC's 10 prompt tokens do not fit COCO-Stuff's 100."""
    cfg = cfg_train("coco", "transductive", f"init_from={runs.last_ckpt('voc')}")
    with pytest.raises(ValueError, match="does not fit"):
        build_module(cfg, instantiate(cfg.dataset))
