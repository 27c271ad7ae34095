"""What ``train.py`` and ``eval.py`` do with a composed Hydra config."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

import zegclip
from zegclip.module import SUMMARY_KEYS, ZegCLIPModule

console = Console()
# The frozen CLIP towers are in eval mode on purpose; Lightning would warn at every fit.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


@rank_zero_only
def announce(message: str) -> None:
    console.print(message)


@rank_zero_only
def save_resolved_config(cfg: DictConfig) -> None:
    """Write the fully resolved config (Hydra's .hydra/config.yaml keeps the interpolations)."""
    path = output_dir(cfg) / "config_resolved.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(_resolved(cfg)))


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in cfg if k != "hydra"}  # fmt: skip


def build_callbacks(cfg: DictConfig, has_unseen: bool, has_logger: bool = True) -> list[L.Callback]:
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None or "_target_" not in node:
            continue
        if not has_logger and node["_target_"].endswith("LearningRateMonitor"):
            continue  # it needs a logger
        if name == "model_checkpoint" and not has_unseen and node.get("monitor") == "val/hIoU":
            node = OmegaConf.merge(node, {"monitor": "val/mIoU"})  # no unseen classes: no hIoU
        callbacks.append(instantiate(node))
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Any]:
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if node is not None and "_target_" in node:
            loggers.append(instantiate(node))
    return loggers


def build_module(cfg: DictConfig, datamodule: Any) -> ZegCLIPModule:
    return ZegCLIPModule(
        model_config=OmegaConf.to_container(cfg.model, resolve=True),
        class_names=list(datamodule.class_names),
        seen=list(datamodule.seen),
        unseen=list(datamodule.unseen),
        setting=cfg.setting,
        templates=_plain(cfg.text.templates),
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
    )


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, then (by default) test the best checkpoint. Returns the test metrics (or {})."""
    if cfg.setting == "transductive" and not cfg.get("init_from"):
        raise ValueError(
            "setting=transductive starts from an inductive checkpoint: set init_from=PATH "
            "(e.g. logs/train/runs/<inductive run>/checkpoints/last.ckpt)"
        )
    L.seed_everything(cfg.seed, workers=True)
    announce(f"[bold]run folder[/bold]: {output_dir(cfg)}")
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule)
    module.plots_dir = str(output_dir(cfg))  # plots/*.png after the test
    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, has_unseen=bool(datamodule.unseen), has_logger=bool(loggers))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    resolved = _resolved(cfg)
    for lg in loggers:
        lg.log_hyperparams(resolved)
    save_resolved_config(cfg)

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    summary: dict[str, Any] = {}
    if cfg.get("test_after_training", True) and not trainer.fast_dev_run:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.loggers = fresh_csv_loggers(trainer.loggers)
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        summary = summary_from_logged(results, datamodule.class_names)
        report(cfg, summary, checkpoint=best or "final weights", dataset=datamodule.name, setting=cfg.setting)
    finish_wandb(loggers)
    announce(f"[bold]run folder[/bold]: {output_dir(cfg)}")
    return summary


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


def summary_from_logged(results: list[dict[str, float]], class_names: Any, stage: str = "test") -> dict[str, Any]:
    """The metric summary from what ``trainer.test`` returns (works across processes: ddp_spawn
    sends rank 0's logged values back). Unlogged values (undefined, e.g. no unseen classes) are NaN."""
    if not results:
        return {}
    logged = results[0]
    nan = float("nan")
    summary: dict[str, Any] = {k: float(logged.get(f"{stage}/{k}", nan)) for k in SUMMARY_KEYS}
    summary["IoU_per_class"] = {name: float(logged.get(f"{stage}/IoU/{name}", nan)) for name in class_names}
    return summary


def finish_wandb(loggers: list[Any]) -> None:
    """Close the W&B run so the next run in this process (e.g. a multirun job) starts a new one."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate a checkpoint (ours, converted or official) on ``cfg.data``'s test split."""
    L.seed_everything(cfg.seed, workers=True)
    announce(f"[bold]run folder[/bold]: {output_dir(cfg)}")
    if not cfg.get("ckpt_path"):
        raise ValueError("eval.py needs ckpt_path=PATH (an official .pth, a converted file, a .ckpt, or 'shapes')")
    save_resolved_config(cfg)
    model = zegclip.load(cfg.ckpt_path, precision=cfg.get("precision"))
    datamodule = instantiate(cfg.data)
    meta = model.metadata
    own_vocabulary = list(meta.get("class_names") or []) == list(datamodule.class_names)
    setting = cfg.get("setting") or meta.get("setting") or "inductive"
    evaluation = OmegaConf.to_container(cfg.evaluation, resolve=True)
    if evaluation.get("seen_bias") is None:
        # the checkpoint's calibration on its own classes; none across datasets unless configured
        evaluation["seen_bias"] = float(meta.get("seen_bias", 0.1 if setting == "inductive" else 0.0)) if own_vocabulary else 0.0
    templates = cfg.text.templates or (meta.get("templates") if own_vocabulary else None) or "single"
    text_file = cfg.text.embedding_file or (meta.get("text_embedding_file") if own_vocabulary else None)
    if text_file and not Path(str(text_file)).is_file():
        announce(f"[yellow]text-embedding file {text_file} not found; computing embeddings with the text tower[/yellow]")
        text_file = None
    module = ZegCLIPModule(
        model_config=model.config.to_dict(),
        class_names=list(datamodule.class_names),
        seen=list(datamodule.seen),
        unseen=list(datamodule.unseen),
        setting=setting,
        templates=_plain(templates),
        text_embedding_file=text_file,
        evaluation=evaluation,
        dataset_name=datamodule.name,
        model=model,
    )
    module.plots_dir = str(output_dir(cfg))  # plots/*.png after the test
    loggers = build_loggers(cfg)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[_progress_bar()])
    results = trainer.test(module, datamodule=datamodule)
    summary = summary_from_logged(results, datamodule.class_names)
    finish_wandb(loggers)
    report(cfg, summary, checkpoint=str(cfg.ckpt_path), dataset=datamodule.name, setting=setting,
           seen_bias=evaluation["seen_bias"])  # fmt: skip
    announce(f"[bold]run folder[/bold]: {output_dir(cfg)}")
    return summary


def _progress_bar() -> L.Callback:
    from lightning.pytorch.callbacks import RichProgressBar

    return RichProgressBar()


def _json_number(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


@rank_zero_only
def report(cfg: DictConfig, summary: dict[str, Any], **info: Any) -> None:
    """Print the per-class table and write ``metrics.json`` into the run folder."""
    if not summary:
        return
    table = Table(title=f"{info.get('dataset')} ({info.get('setting')}): IoU per class (%)")
    table.add_column("class")
    table.add_column("split")
    table.add_column("IoU", justify="right")
    unseen = set(_unseen_names(cfg, summary))
    for name, value in summary["IoU_per_class"].items():
        table.add_row(name, "unseen" if name in unseen else "seen", "-" if value != value else f"{100 * value:.1f}")
    console.print(table)
    headline = "  ".join(
        f"{key}: {'-' if summary[key] != summary[key] else f'{100 * summary[key]:.1f}'}" for key in SUMMARY_KEYS
    )
    console.print(f"[bold]{headline}[/bold]")
    payload = {k: _json_number(summary[k]) for k in SUMMARY_KEYS}
    payload["IoU_per_class"] = {k: _json_number(v) for k, v in summary["IoU_per_class"].items()}
    payload.update({k: v for k, v in info.items()})
    path = output_dir(cfg) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    console.print(f"metrics written to {path}")


def _unseen_names(cfg: DictConfig, summary: dict[str, Any]) -> list[str]:
    names = list(summary["IoU_per_class"])
    unseen = cfg.data.get("unseen") or []
    return [names[i] for i in unseen if 0 <= int(i) < len(names)]


