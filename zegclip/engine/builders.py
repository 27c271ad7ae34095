"""Build what a run needs from its composed config: the LightningModule, callbacks, loggers, trainer
settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from zegclip.common.errors import RunInterrupted
from zegclip.common.values import plain
from zegclip.engine.hydra_job import is_multirun, job_overrides, resolved
from zegclip.engine.objective import check_tuning_start
from zegclip.engine.stages import inductive_stage, total_steps
from zegclip.model.inference import own_seen_bias
from zegclip.training.checkpointing import AtomicCheckpointIO, check_selection_metric
from zegclip.training.console import announce
from zegclip.training.interrupts import Interrupts
from zegclip.training.module import ZegCLIPModule


def build_callbacks(cfg: DictConfig, has_unseen: bool, has_logger: bool = True) -> list[L.Callback]:
    """The configured callbacks (``callbacks`` group); ``last.ckpt`` is added by :func:`train`."""
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None or "_target_" not in node:
            continue
        if not has_logger and node["_target_"].endswith("LearningRateMonitor"):
            continue  # it needs a logger
        if name == "best_checkpoint":
            check_selection_metric(str(node.get("monitor")), str(cfg.setting), has_unseen)
        callbacks.append(instantiate(node))
    return callbacks


def wandb_identity(cfg: DictConfig) -> dict[str, Any]:
    """Name, group and tags that tell W&B runs apart: the name carries the seed and the job's other
    overrides, one group per sweep (or per dataset x setting for single runs), tags for dataset /
    setting / seed."""
    data, setting, seed = cfg.dataset.name, cfg.setting, cfg.seed
    ignored = ("seed=", "dataset=", "setting=", "experiment=", "hydra.", "hydra/", "paths.", "logger")
    others = [o for o in job_overrides() if not o.lstrip("+~").startswith(ignored)]
    name = f"{data}-{setting}-seed{seed}" + (f"-{','.join(others)}" if others else "")
    group = f"sweep-{Path(str(HydraConfig.get().sweep.dir)).name}" if is_multirun() else f"{data}-{setting}"
    return {
        "name": name,
        "group": group,
        "tags": [str(data), str(setting), f"seed{seed}", str(cfg.task_name)],
    }


def build_loggers(cfg: DictConfig) -> list[Any]:
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if node is None or "_target_" not in node:
            continue
        if str(node["_target_"]).endswith("WandbLogger"):
            identity = wandb_identity(cfg)
            extra = {k: v for k, v in identity.items() if node.get(k) is None}
            loggers.append(instantiate(node, **extra))
        else:
            loggers.append(instantiate(node))
    return loggers


def build_module(cfg: DictConfig, datamodule: Any) -> ZegCLIPModule:
    stage = inductive_stage(cfg) or {}
    test_stage = getattr(
        datamodule, "evaluation_name", "test"
    )  # "tune": the tuning split (tuning=pseudo_unseen)
    if test_stage != "test":
        announce(datamodule.describe())
        check_tuning_start(cfg.get("init_from"), datamodule)
    module = ZegCLIPModule(
        model_config=OmegaConf.to_container(cfg.model, resolve=True),
        class_names=list(datamodule.class_names),
        seen=list(datamodule.seen),
        unseen=list(datamodule.unseen),
        setting=cfg.setting,
        templates=plain(cfg.text.templates),
        text_embedding_file=cfg.text.embedding_file,
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        evaluation=OmegaConf.to_container(cfg.evaluation, resolve=True),
        init_from=cfg.get("init_from"),
        compile=bool(cfg.get("compile", False)),
        log_images=int(cfg.get("log_images", 0)),
        save_frozen_clip=bool(cfg.get("save_frozen_clip", True)),
        dataset_name=datamodule.name,
        seed=int(cfg.seed),
        inductive_steps=int(stage.get("steps", 0)),
        inductive_schedule_steps=stage.get("schedule_steps"),
        inductive_seen_bias=stage.get("seen_bias"),
        text_synonyms=getattr(datamodule, "text_synonyms", None),
    )
    module.test_stage = test_stage
    return module


def trainer_overrides(cfg: DictConfig, callbacks: list[L.Callback]) -> dict[str, Any]:
    """Settings every run gets: atomic checkpoint writes, our own model summary, no checkpoint
    callback Lightning would add by itself (last.ckpt is ours), and at least one logged training
    step however short the run."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    max_steps = total_steps(cfg)
    every = int(cfg.trainer.get("log_every_n_steps") or 50)
    return {
        "plugins": [AtomicCheckpointIO()],
        "enable_model_summary": False,
        "enable_checkpointing": any(isinstance(cb, ModelCheckpoint) for cb in callbacks),
        "log_every_n_steps": max(1, min(every, max_steps)),
        "max_steps": max_steps,
    }


def log_config_once(cfg: DictConfig, loggers: list[Any], module: L.LightningModule, datamodule: Any) -> None:
    """The resolved config goes to every logger once; Lightning would add the module's and the
    datamodule's hyper-parameters on top (a second, differently shaped copy)."""
    config = resolved(cfg)
    for lg in loggers:
        lg.log_hyperparams(config)
    module._log_hyperparams = False
    datamodule._log_hyperparams = False


def fresh_csv_loggers(loggers: list[Any]) -> list[Any]:
    """CSV loggers for the test stage writing to their own ``version="test"`` file.

    A spawned strategy (ddp_spawn) sends the parent's CSV logger, which never saw the training
    metrics' header, to the test processes; a new file avoids mixing the two tables.
    """
    from lightning.pytorch.loggers import CSVLogger

    return [
        CSVLogger(save_dir=lg.save_dir, name=lg.name, version="test") if isinstance(lg, CSVLogger) else lg
        for lg in loggers
    ]


def finish_wandb(loggers: list[Any]) -> None:
    """Close the W&B run so the next run in this process (e.g. a multirun job) starts a new one."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()


def evaluation_module(cfg: DictConfig, model: Any, datamodule: Any) -> ZegCLIPModule:
    meta = model.metadata
    own_vocabulary = list(meta.get("class_names") or []) == list(datamodule.class_names)
    setting = cfg.get("setting") or meta.get("setting") or "inductive"
    evaluation = OmegaConf.to_container(cfg.evaluation, resolve=True)
    if evaluation.get("seen_bias") is None:  # none across datasets unless configured
        evaluation["seen_bias"] = own_seen_bias(meta, datamodule.class_names, setting)
    templates = cfg.text.templates or (meta.get("templates") if own_vocabulary else None) or "single"
    if cfg.text.get("cache_dir"):  # computed embeddings kept on disk (A-847: 847 x 15 prompts)
        model.text_encoder.cache_dir = Path(str(cfg.text.cache_dir))
    text_file = cfg.text.embedding_file or (meta.get("text_embedding_file") if own_vocabulary else None)
    if text_file and not Path(str(text_file)).is_file():
        announce(
            f"[yellow]text-embedding file {text_file} not found; computing "
            "embeddings with the text tower[/yellow]"
        )
        text_file = None
    return ZegCLIPModule(
        model_config=model.config.to_dict(),
        class_names=list(datamodule.class_names),
        seen=list(datamodule.seen),
        unseen=list(datamodule.unseen),
        setting=setting,
        templates=plain(templates),
        text_embedding_file=text_file,
        evaluation=evaluation,
        dataset_name=datamodule.name,
        model=model,
        # VOC-20b scores more names than it has classes (zegclip/data/prompts.py)
        text_prompts=_plain_list(getattr(datamodule, "text_prompts", None)),
        prompt_to_class=_plain_list(getattr(datamodule, "prompt_to_class", None)),
        text_synonyms=getattr(datamodule, "text_synonyms", None),
    )


def _plain_list(values: Any) -> list[Any] | None:
    return None if values is None else list(values)


class InterruptCheck(L.Callback):
    """Evaluation: stop at the next batch once a signal arrived (nothing to save)."""

    def __init__(self, interrupts: Interrupts) -> None:
        self.interrupts = interrupts

    def on_test_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.interrupts.received is not None:
            raise RunInterrupted(self.interrupts.received, None, None)


def progress_bar() -> L.Callback:
    from zegclip.training.console import StepProgressBar

    return StepProgressBar()
