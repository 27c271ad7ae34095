"""``train.py``: fit with a composed Hydra config, then test the final weights.

Protocol (docs/evaluation.md §6): the test after training and ``eval.py`` report the **final weights**
(``checkpoints/last.ckpt``, the last step), as the paper's fixed-iteration recipes do. Choosing a
"best" checkpoint is opt-in (``callbacks=best test_weights=best``) and, with unseen classes, may
only use seen-class mIoU. ``metrics.json`` records which weights were tested and how they were
chosen, with the seed and the job's overrides.

Faults: ``last.ckpt`` is written atomically every ``checkpoint_every_n_steps`` steps, before every
validation, at the end and when SIGTERM / SIGINT / the SLURM pre-timeout signal arrives (the run
then exits non-zero saying how to resume); a non-finite loss stops training; ``run.json`` in the
run folder records how the run ended.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

import zegclip.engine.resolvers  # noqa: F401  (the ${zegclip.*} resolvers of the configs)
from zegclip.common.errors import ConfigError
from zegclip.engine import run_folder
from zegclip.engine.builders import (
    build_callbacks,
    build_loggers,
    build_module,
    finish_wandb,
    fresh_csv_loggers,
    log_config_once,
    trainer_overrides,
)
from zegclip.engine.hydra_job import output_dir, save_resolved_config
from zegclip.engine.objective import check_objective, current_sweeper
from zegclip.engine.results import announce_end, summary_from_logged, write_metrics
from zegclip.engine.run_status import claim, recorded
from zegclip.engine.stages import inductive_stage, stage_callbacks, stages_record
from zegclip.model.precision import accelerator_device, choose_trainer_precision
from zegclip.training.checkpointing import LastCheckpoint
from zegclip.training.console import announce, model_summary, quiet_lightning
from zegclip.training.interrupts import Interrupts
from zegclip.training.module import check_setting
from zegclip.training.resume import check_resume

quiet_lightning()


def check_train_config(cfg: DictConfig) -> None:
    """Everything a training config must satisfy, checked before any data is touched."""
    stage = inductive_stage(cfg)  # before any data is touched
    check_setting(
        str(cfg.setting), init_from=cfg.get("init_from"), inductive_steps=stage["steps"] if stage else 0
    )
    check_seed(cfg.get("seed"))
    check_objective(cfg, current_sweeper())  # a search may not optimise the test split (zero-shot)
    weights = cfg.get("test_weights", "last")
    if weights not in ("last", "best"):
        raise ConfigError(f"test_weights must be 'last' (the final weights) or 'best', got {weights!r}")
    if weights == "best" and not (cfg.get("callbacks") or {}).get("best_checkpoint"):
        raise ConfigError(
            "test_weights=best needs a checkpoint selection: add callbacks=best (val/mIoU_seen)"
        )
    max_steps = cfg.trainer.get("max_steps")
    if not _is_integer(max_steps) or max_steps <= 0:
        raise ConfigError(
            f"trainer.max_steps must be an integer > 0 (iteration-based recipes), got {max_steps!r}"
        )


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()


def check_seed(seed: Any) -> None:
    """``seed`` is an integer (``seed=abc`` fails here with the value, not inside Lightning)."""
    if not _is_integer(seed):
        raise ConfigError(f"seed must be an integer (e.g. seed=0), got {seed!r}")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, then (by default) test the final weights. Returns the test metrics (or {})."""
    check_train_config(cfg)
    folder = claim(cfg)
    ckpt_dir = output_dir(cfg) / "checkpoints"
    resume = cfg.get("ckpt_path")
    if resume is None and folder is not None and folder.requeued and folder.last_checkpoint.is_file():
        resume = str(folder.last_checkpoint)  # a requeued SLURM job continues its own run
        announce(f"requeued job: resuming from {resume}")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    announce(f"[bold]run folder[/bold]: {output_dir(cfg)}")

    interrupts = Interrupts(cfg.get("slurm_requeue_signal"))
    last = LastCheckpoint(
        ckpt_dir, int(cfg.get("checkpoint_every_n_steps", 500)), interrupts, resumed_from=resume
    )
    with recorded(folder, last_good=lambda: last.last_good, signal=lambda: interrupts.received):
        if rank_zero_only.rank == 0:
            run_folder.check_writable(ckpt_dir)  # at start-up, not at the first checkpoint
        with interrupts:
            datamodule = instantiate(cfg.dataset)
            if cfg.get("verify_data", True):
                datamodule.verify_eval_splits(("val",))
            module = build_module(cfg, datamodule)
            check_resume(resume, module)  # an unusable checkpoint fails here, before any step
            module.plots_dir = str(output_dir(cfg))  # plots/*.png after the test
            announce(model_summary(module))
            loggers = build_loggers(cfg)
            callbacks = [
                *build_callbacks(cfg, has_unseen=bool(datamodule.unseen), has_logger=bool(loggers)),
                *stage_callbacks(cfg, ckpt_dir),
                last,
            ]
            precision = choose_trainer_precision(
                cfg.trainer.get("precision", "32-true"), accelerator_device(cfg.trainer.get("accelerator"))
            )
            announce(precision.line())
            trainer: L.Trainer = instantiate(
                cfg.trainer,
                callbacks=callbacks,
                logger=loggers or False,
                precision=precision.precision,
                **trainer_overrides(cfg, callbacks),
            )
            log_config_once(cfg, loggers, module, datamodule)
            save_resolved_config(cfg)

            trainer.fit(module, datamodule=datamodule, ckpt_path=resume)

            summary: dict[str, Any] = {}
            if cfg.get("test_after_training", True) and not trainer.fast_dev_run:
                weights = weights_to_test(cfg, trainer, last)
                trainer.loggers = fresh_csv_loggers(trainer.loggers)
                results = trainer.test(
                    module,
                    datamodule=datamodule,
                    ckpt_path=weights["checkpoint"],
                    weights_only=True,
                    verbose=False,
                )
                summary = summary_from_logged(results, datamodule.class_names, stage=module.test_stage)
                stages = stages_record(cfg, callbacks)
                write_metrics(
                    cfg,
                    summary,
                    datamodule.class_split.unseen_names,
                    weights=weights,
                    dataset=datamodule.name,
                    setting=cfg.setting,
                    precision=precision.to_dict(),
                    **({"stages": stages} if stages else {}),
                )
            finish_wandb(loggers)
    announce_end(cfg, last.last_good)
    return summary


def weights_to_test(cfg: DictConfig, trainer: L.Trainer, last: LastCheckpoint) -> dict[str, Any]:
    """Which checkpoint the test stage evaluates, and how it was chosen (recorded in metrics.json)."""
    if cfg.get("test_weights", "last") == "best":
        callback = next(cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None))
        path = getattr(callback, "best_model_path", "")
        if not path:
            raise RuntimeError(
                f"test_weights=best: no checkpoint was selected by {callback.monitor} (no validation ran?)"
            )
        step = int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
        return {
            "checkpoint": path,
            "step": step,
            "selection": f"best {callback.monitor} on the validation split (opt-in)",
        }
    return {
        "checkpoint": str(last.path),
        "step": int(trainer.global_step),
        "selection": "final weights (last step)",
    }
