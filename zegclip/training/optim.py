"""Optimiser groups and the mmcv-style poly schedule with linear warm-up (docs/method.md §4)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from zegclip.common.errors import ConfigError

BACKBONE_PREFIX = "image_encoder.vit."
"""Parameter names of the CLIP image tower's own weights inside :class:`zegclip.model.ZegCLIP`."""


def parameter_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    norm_decay_exempt: bool = False,
    backbone_lr_scale: float = 1.0,
) -> list[dict]:
    """AdamW groups over the trainable parameters.

    The official mmcv ``custom_keys`` (backbone lr x10, head lr x10, norm decay x0) resolve,
    first match wins, to *every* trainable parameter at ``10 * base_lr`` with full weight decay:
    the norm exemption never fires. ``lr`` here is that effective rate (2e-4). Set
    ``norm_decay_exempt`` to really exempt LayerNorm weights/biases from decay.
    ``backbone_lr_scale`` multiplies the rate of the CLIP image tower's own weights (trainable only
    with ``ft_backbone``; the official recipe trains them at the full rate, i.e. 1.0).
    """
    norm_params: set[int] = set()
    if norm_decay_exempt:
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                norm_params.update(id(p) for p in module.parameters(recurse=False))
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            key = (name.startswith(BACKBONE_PREFIX), id(param) in norm_params)
            groups.setdefault(key, []).append(param)
    out = []
    for (backbone, norm), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "lr": lr * (backbone_lr_scale if backbone else 1.0),
                "weight_decay": 0.0 if norm else weight_decay,
                "name": ("backbone_" if backbone else "") + ("no_decay" if norm else "decay"),
            }
        )
    return out


def poly_warmup_factor(
    base_lr: float,
    max_steps: int,
    power: float = 0.9,
    min_lr: float = 1e-6,
    warmup_steps: int = 1500,
    warmup_ratio: float = 1e-6,
) -> Callable[[int], float]:
    """Multiplier of ``base_lr`` at step ``t`` for ``LambdaLR`` (mmcv semantics).

    ``lr(t) = (base_lr - min_lr) * (1 - t / max_steps) ** power + min_lr``; during the first
    ``warmup_steps`` it is scaled by ``1 - (1 - t / warmup_steps) * (1 - warmup_ratio)``.
    """
    if max_steps <= 0:
        raise ConfigError(f"the poly schedule needs trainer.max_steps > 0, got {max_steps}")

    def factor(step: int) -> float:
        progress = min(step, max_steps) / max_steps
        lr = (base_lr - min_lr) * (1 - progress) ** power + min_lr
        if step < warmup_steps:
            lr *= 1 - (1 - step / warmup_steps) * (1 - warmup_ratio)
        return lr / base_lr

    return factor


def restarted_factor(
    first: Callable[[int], float], second: Callable[[int], float], boundary: int
) -> Callable[[int], float]:
    """``first`` for the steps before ``boundary``, then ``second`` restarted from 0 at it.

    The transductive recipe in one run: stage 1 follows the inductive recipe's schedule, stage 2 is
    a fresh schedule, as the official second run that starts from the inductive checkpoint
    (``load_from``: weights only, a new schedule).
    """

    def factor(step: int) -> float:
        return first(step) if step < boundary else second(step - boundary)

    return factor


def build_optimizer(
    model: nn.Module,
    max_steps: int,
    lr: float = 2e-4,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    norm_decay_exempt: bool = False,
    power: float = 0.9,
    min_lr: float = 1e-6,
    warmup_steps: int = 1500,
    warmup_ratio: float = 1e-6,
    backbone_lr_scale: float = 1.0,
    restart_at: int = 0,
    first_schedule_steps: int | None = None,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with the per-step poly-with-warm-up schedule.

    With ``restart_at`` = K > 0 (a two-stage run of ``max_steps`` steps in all), the steps before K
    follow a schedule over ``first_schedule_steps`` (default ``2 K``) and the schedule restarts,
    warm-up included, at step K for the remaining ``max_steps - K`` steps.
    """
    groups = parameter_groups(model, lr, weight_decay, norm_decay_exempt, backbone_lr_scale)
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    shape = {"power": power, "min_lr": min_lr, "warmup_steps": warmup_steps, "warmup_ratio": warmup_ratio}
    if restart_at > 0:
        if not 0 < restart_at < max_steps:
            raise ValueError(
                f"restart_at must lie inside the run's 1..{max_steps - 1} steps, got {restart_at}"
            )
        first = poly_warmup_factor(lr, first_schedule_steps or 2 * restart_at, **shape)
        factor = restarted_factor(first, poly_warmup_factor(lr, max_steps - restart_at, **shape), restart_at)
    else:
        factor = poly_warmup_factor(lr, max_steps, **shape)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return optimizer, scheduler
