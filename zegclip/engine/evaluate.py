"""``eval.py``: evaluate a checkpoint (ours, converted or official) on a dataset's test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

import zegclip.engine.resolvers  # noqa: F401  (the ${zegclip.*} resolvers of the configs)
from zegclip.common.errors import CheckpointNotFoundError, ConfigError
from zegclip.engine.builders import (
    InterruptCheck,
    build_loggers,
    evaluation_module,
    finish_wandb,
    progress_bar,
)
from zegclip.engine.hydra_job import output_dir, save_resolved_config
from zegclip.engine.results import announce_end, summary_from_logged, write_metrics
from zegclip.engine.run_status import claim, recorded
from zegclip.engine.train import check_seed
from zegclip.model.precision import accelerator_device, choose
from zegclip.training.checkpointing import AtomicCheckpointIO
from zegclip.training.console import announce, quiet_lightning
from zegclip.training.interrupts import Interrupts

quiet_lightning()


def resolve_checkpoint(path: str) -> str:
    """A run folder means its final weights (``checkpoints/last.ckpt``); anything else is kept."""
    candidate = Path(path)
    if candidate.is_dir():
        last = candidate / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise CheckpointNotFoundError(f"ckpt_path={path} is a folder without checkpoints/last.ckpt")
        return str(last)
    return path


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate a checkpoint (ours, converted or official) on ``cfg.dataset``'s test split."""
    import zegclip

    check_seed(cfg.get("seed"))
    if not cfg.get("ckpt_path"):
        raise ConfigError(
            "eval.py needs ckpt_path=PATH (an official .pth, a converted file, a "
            ".ckpt, a run folder, or 'shapes')"
        )
    folder = claim(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    announce(f"[bold]run folder[/bold]: {output_dir(cfg)}")
    save_resolved_config(cfg)
    checkpoint = resolve_checkpoint(str(cfg.ckpt_path))
    interrupts = Interrupts(None)
    with recorded(folder, signal=lambda: interrupts.received):
        with interrupts:
            precision = choose(
                cfg.get("precision", "auto"), accelerator_device(cfg.trainer.get("accelerator"))
            )
            announce(precision.line())
            model = zegclip.load(checkpoint, precision=precision)
            datamodule = instantiate(cfg.dataset)
            module = evaluation_module(cfg, model, datamodule)
            module.plots_dir = str(output_dir(cfg))  # plots/*.png after the test
            loggers = build_loggers(cfg)
            trainer: L.Trainer = instantiate(
                cfg.trainer,
                logger=loggers or False,
                callbacks=[progress_bar(), InterruptCheck(interrupts)],
                plugins=[AtomicCheckpointIO()],
                enable_model_summary=False,
                enable_checkpointing=False,
            )
            results = trainer.test(module, datamodule=datamodule, verbose=False)
            summary = summary_from_logged(results, datamodule.class_names)
            finish_wandb(loggers)
        weights = {
            "checkpoint": checkpoint,
            "step": model.metadata.get("global_step", model.metadata.get("iter")),
            "selection": "given by ckpt_path",
        }
        write_metrics(
            cfg,
            summary,
            datamodule.class_split.unseen_names,
            weights=weights,
            dataset=datamodule.name,
            setting=module.setting,
            seen_bias=module.evaluation["seen_bias"],
            precision=precision.to_dict(),
        )
    announce_end(cfg, None)
    return summary
