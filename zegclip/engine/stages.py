"""The transductive setting's two stages in one run (``inductive_stage`` of
conf/setting/transductive.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from zegclip.training.checkpointing import StageCheckpoint
from zegclip.training.console import announce


def inductive_stage(cfg: DictConfig) -> dict[str, Any] | None:
    """The inductive first stage of ``setting=transductive`` without ``init_from`` (None: one stage).

    The paper's transductive schedule is the inductive recipe's first half, then self-training for
    as many steps (VOC 10k + 10k, COCO-Stuff 40k + 40k, Context 20k + 20k); the official code runs
    it as two commands (the second with ``--load-from`` the first's ``iter_<half>.pth``).
    """
    if str(cfg.get("setting")) != "transductive" or cfg.get("init_from"):
        return None
    stage = cfg.get("inductive_stage") or {}
    steps = int(stage.get("steps") or 0)
    if steps <= 0:
        return None  # check_setting then asks for init_from
    schedule = stage.get("schedule_steps")
    if schedule is not None and int(schedule) < steps:
        raise ValueError(
            f"inductive_stage.schedule_steps={schedule} is shorter than inductive_stage.steps={steps}"
        )
    return {"steps": steps, "schedule_steps": int(schedule or 2 * steps), "seen_bias": stage.get("seen_bias")}


def total_steps(cfg: DictConfig) -> int:
    """Steps of the whole run: ``trainer.max_steps``, plus the inductive stage of a staged run."""
    stage = inductive_stage(cfg)
    return int(cfg.trainer.max_steps) + (stage["steps"] if stage else 0)


def stage_callbacks(cfg: DictConfig, ckpt_dir: Path) -> list[L.Callback]:
    stage = inductive_stage(cfg)
    if stage is None:
        return []
    k, total = stage["steps"], total_steps(cfg)
    announce(
        f"transductive schedule in one run: steps 1-{k} inductive (the first half of the inductive recipe, "
        f"schedule of {stage['schedule_steps']} steps), steps {k + 1}-{total} transductive self-training "
        "(fresh optimiser and schedule)"
    )
    return [StageCheckpoint(ckpt_dir, k)]


def stages_record(cfg: DictConfig, callbacks: list[L.Callback]) -> list[dict[str, Any]] | None:
    """``stages`` of metrics.json: each stage's steps, and the inductive stage's own checkpoint."""
    stage = inductive_stage(cfg)
    if stage is None:
        return None
    saved = next((cb.saved for cb in callbacks if isinstance(cb, StageCheckpoint)), None)
    k = stage["steps"]
    return [
        {
            "setting": "inductive",
            "first_step": 1,
            "last_step": k,
            "schedule_steps": stage["schedule_steps"],
            "checkpoint": saved,
        },
        {"setting": "transductive", "first_step": k + 1, "last_step": total_steps(cfg)},
    ]
