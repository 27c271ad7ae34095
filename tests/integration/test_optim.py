"""The optimizer a composed config builds: one AdamW group at the official effective lr/wd, and the
mmcv poly schedule with linear warm-up (checked numerically against mmcv's formulas)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from zegclip.engine.builders import build_module
from zegclip.engine.stages import total_steps
from zegclip.training.optim import poly_warmup_factor


def configured(cfg):
    """The module of a composed config with a trainer attached, and its optimizer + scheduler."""
    module = build_module(cfg, instantiate(cfg.dataset))
    module.trainer = L.Trainer(max_steps=total_steps(cfg), logger=False, enable_progress_bar=False)
    conf = module.configure_optimizers()
    return module, conf["optimizer"], conf["lr_scheduler"]


def trainable(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters() if p.requires_grad}


def mmcv_lr(t: int, base: float, max_steps: int, power=0.9, min_lr=1e-6, warmup=1500, ratio=1e-6) -> float:
    """mmcv PolyLrUpdaterHook(by_epoch=False, min_lr) + linear warm-up: the lr of iteration ``t``."""
    regular = (base - min_lr) * (1 - t / max_steps) ** power + min_lr
    if t < warmup:
        k = (1 - t / warmup) * (1 - ratio)
        return regular * (1 - k)
    return regular


def test_default_optimizer_one_adamw_group(cfg_train) -> None:
    cfg = cfg_train("voc", "inductive", "optimizer.warmup_steps=1500", "trainer.max_steps=20000")
    module, optimizer, scheduler = configured(cfg)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert len(optimizer.param_groups) == 1
    (group,) = optimizer.param_groups
    assert group["initial_lr"] == 2e-4 and group["weight_decay"] == 0.01
    assert tuple(group["betas"]) == (0.9, 0.999)
    # exactly the trainable parameters (prompts, decoder, ...), none of the frozen CLIP
    assert {id(p) for p in group["params"]} == trainable(module)
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    assert any("prompt" in n for n in names) and any(".decoder." in n for n in names)
    frozen = [p for n, p in module.named_parameters() if ".vit." in n or "text_encoder" in n]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert scheduler["interval"] == "step"


def test_norm_decay_exempt_puts_layernorms_at_zero_decay(cfg_train) -> None:
    cfg = cfg_train("voc", "inductive", "optimizer.norm_decay_exempt=true")
    module, optimizer, _ = configured(cfg)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"decay", "no_decay"}
    norms = {
        id(p)
        for m in module.modules()
        if isinstance(m, nn.LayerNorm)
        for p in m.parameters()
        if p.requires_grad
    }
    assert norms
    assert {id(p) for p in groups["no_decay"]["params"]} == norms
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 0.01
    assert groups["no_decay"]["initial_lr"] == groups["decay"]["initial_lr"] == 2e-4
    covered = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert len(covered) == len(set(covered)) and set(covered) == trainable(module)


def test_backbone_lr_scale_applies_to_the_fine_tuned_tower_only(cfg_train) -> None:
    cfg = cfg_train(
        "voc",
        "inductive",
        "model.ft_backbone=true",
        "model.prompt_tokens=0",
        "optimizer.backbone_lr_scale=0.1",
    )
    module, optimizer, _ = configured(cfg)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"decay", "backbone_decay"}
    tower = {id(p) for p in module.model.image_encoder.vit.parameters()}
    assert {id(p) for p in groups["backbone_decay"]["params"]} == tower
    assert groups["backbone_decay"]["initial_lr"] == pytest.approx(0.1 * groups["decay"]["initial_lr"])
    assert not tower & {id(p) for p in groups["decay"]["params"]}


@pytest.mark.parametrize(("max_steps", "warmup"), [(100, 10), (20000, 1500)])
def test_poly_warmup_factor_matches_mmcv(max_steps: int, warmup: int) -> None:
    base = 2e-4
    factor = poly_warmup_factor(
        base, max_steps, power=0.9, min_lr=1e-6, warmup_steps=warmup, warmup_ratio=1e-6
    )
    for t in [0, 1, warmup // 2, warmup - 1, warmup, warmup + 1, max_steps // 2, max_steps - 1, max_steps]:
        expected = mmcv_lr(t, base, max_steps, warmup=warmup)
        assert base * factor(t) == pytest.approx(expected, rel=1e-12, abs=1e-20), t


def test_scheduler_steps_follow_the_formula(cfg_train) -> None:
    """Stepping the configured optimizer/scheduler: lr at iteration t is mmcv's lr(t)."""
    cfg = cfg_train("voc", "inductive", "trainer.max_steps=12", "optimizer.warmup_steps=4")
    _, optimizer, conf = configured(cfg)
    scheduler = conf["scheduler"]
    for t in range(13):
        lr = optimizer.param_groups[0]["lr"]
        assert lr == pytest.approx(mmcv_lr(t, 2e-4, 12, warmup=4), rel=1e-12, abs=1e-20), t
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-6)  # min_lr after the end


def test_transductive_in_one_run_restarts_the_schedule(cfg_train) -> None:
    """Steps 1..K follow the inductive recipe's schedule (2K long; the official second run loads its
    iter_K checkpoint), then the schedule restarts, warm-up included, for the transductive K steps."""
    cfg = cfg_train("voc", "transductive", "trainer.max_steps=6", "optimizer.warmup_steps=2")
    _, optimizer, conf = configured(cfg)
    scheduler = conf["scheduler"]
    for t in range(13):
        expected = mmcv_lr(t, 2e-4, 12, warmup=2) if t < 6 else mmcv_lr(t - 6, 2e-4, 6, warmup=2)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12, abs=1e-20), t
        optimizer.step()
        scheduler.step()
    stage_two = cfg_train(
        "voc", "transductive", "trainer.max_steps=6", "optimizer.warmup_steps=2", "init_from=x.ckpt"
    )
    assert total_steps(stage_two) == 6 and total_steps(cfg) == 12  # init_from: stage two only


def test_poly_needs_max_steps() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        poly_warmup_factor(2e-4, 0)
