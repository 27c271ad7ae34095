"""What ``train.py`` and ``eval.py`` do with a composed Hydra config.

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

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

import zegclip.resolvers  # noqa: F401  (the ${zegclip.*} resolvers of the configs)
from zegclip import run_folder
from zegclip.atomic import write_text
from zegclip.checkpointing import AtomicCheckpointIO, LastCheckpoint, StageCheckpoint, check_selection_metric
from zegclip.console import announce, console, model_summary, quiet_lightning
from zegclip.errors import CheckpointNotFoundError, ConfigError, RunInterrupted
from zegclip.interrupts import Interrupts
from zegclip.model.inference import default_seen_bias
from zegclip.model.precision import accelerator_device, choose, choose_trainer_precision
from zegclip.module import SUMMARY_KEYS, ZegCLIPModule, check_setting
from zegclip.objective import check_objective, check_tuning_start, current_sweeper, objective_record
from zegclip.resume import check_resume
from zegclip.values import json_number, plain

quiet_lightning()



def output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


@rank_zero_only
def save_resolved_config(cfg: DictConfig) -> None:
    """Write the fully resolved config (Hydra's .hydra/config.yaml keeps the interpolations)."""
    write_text(output_dir(cfg) / "config_resolved.yaml", OmegaConf.to_yaml(_resolved(cfg)), what="resolved config")


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
            for k in cfg if k != "hydra"}  # fmt: skip


def job_overrides() -> list[str]:
    """The job's command-line overrides (``key=value``), as Hydra recorded them."""
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # no Hydra config (a config built by hand)
        return []


def is_multirun() -> bool:
    try:
        return str(HydraConfig.get().mode) == "RunMode.MULTIRUN"
    except ValueError:
        return False


# -- building blocks ---------------------------------------------------------------------------


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
    return {"name": name, "group": group, "tags": [str(data), str(setting), f"seed{seed}", str(cfg.task_name)]}


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
        raise ValueError(f"inductive_stage.schedule_steps={schedule} is shorter than inductive_stage.steps={steps}")
    return {"steps": steps, "schedule_steps": int(schedule or 2 * steps), "seen_bias": stage.get("seen_bias")}


def build_module(cfg: DictConfig, datamodule: Any) -> ZegCLIPModule:
    stage = inductive_stage(cfg) or {}
    test_stage = getattr(datamodule, "evaluation_name", "test")  # "tune": the tuning split (tuning=pseudo_unseen)
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


def _check_train_config(cfg: DictConfig) -> None:
    stage = inductive_stage(cfg)  # before any data is touched
    check_setting(str(cfg.setting), init_from=cfg.get("init_from"), inductive_steps=stage["steps"] if stage else 0)
    check_seed(cfg.get("seed"))
    check_objective(cfg, current_sweeper())  # a search may not optimise the test split (zero-shot)
    weights = cfg.get("test_weights", "last")
    if weights not in ("last", "best"):
        raise ConfigError(f"test_weights must be 'last' (the final weights) or 'best', got {weights!r}")
    if weights == "best" and not (cfg.get("callbacks") or {}).get("best_checkpoint"):
        raise ConfigError("test_weights=best needs a checkpoint selection: add callbacks=best (val/mIoU_seen)")
    max_steps = cfg.trainer.get("max_steps")
    if not _is_integer(max_steps) or max_steps <= 0:
        raise ConfigError(f"trainer.max_steps must be an integer > 0 (iteration-based recipes), got {max_steps!r}")


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()


def check_seed(seed: Any) -> None:
    """``seed`` is an integer (``seed=abc`` fails here with the value, not inside Lightning)."""
    if not _is_integer(seed):
        raise ConfigError(f"seed must be an integer (e.g. seed=0), got {seed!r}")


def _trainer_overrides(cfg: DictConfig, callbacks: list[L.Callback]) -> dict[str, Any]:
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


def total_steps(cfg: DictConfig) -> int:
    """Steps of the whole run: ``trainer.max_steps``, plus the inductive stage of a staged run."""
    stage = inductive_stage(cfg)
    return int(cfg.trainer.max_steps) + (stage["steps"] if stage else 0)


def _stage_callbacks(cfg: DictConfig, ckpt_dir: Path) -> list[L.Callback]:
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


def _stages_record(cfg: DictConfig, callbacks: list[L.Callback]) -> list[dict[str, Any]] | None:
    """``stages`` of metrics.json: each stage's steps, and the inductive stage's own checkpoint."""
    stage = inductive_stage(cfg)
    if stage is None:
        return None
    saved = next((cb.saved for cb in callbacks if isinstance(cb, StageCheckpoint)), None)
    k = stage["steps"]
    return [
        {"setting": "inductive", "first_step": 1, "last_step": k, "schedule_steps": stage["schedule_steps"],
         "checkpoint": saved},
        {"setting": "transductive", "first_step": k + 1, "last_step": total_steps(cfg)},
    ]  # fmt: skip


# -- train -------------------------------------------------------------------------------------


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, then (by default) test the final weights. Returns the test metrics (or {})."""
    _check_train_config(cfg)
    folder = _claim(cfg)
    ckpt_dir = output_dir(cfg) / "checkpoints"
    resume = cfg.get("ckpt_path")
    if resume is None and folder is not None and folder.requeued and folder.last_checkpoint.is_file():
        resume = str(folder.last_checkpoint)  # a requeued SLURM job continues its own run
        announce(f"requeued job: resuming from {resume}")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    announce(f"[bold]run folder[/bold]: {output_dir(cfg)}")

    interrupts = Interrupts(cfg.get("slurm_requeue_signal"))
    last = LastCheckpoint(ckpt_dir, int(cfg.get("checkpoint_every_n_steps", 500)), interrupts, resumed_from=resume)
    try:
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
            callbacks = [*build_callbacks(cfg, has_unseen=bool(datamodule.unseen), has_logger=bool(loggers)),
                         *_stage_callbacks(cfg, ckpt_dir), last]  # fmt: skip
            precision = choose_trainer_precision(cfg.trainer.get("precision", "32-true"),
                                                 accelerator_device(cfg.trainer.get("accelerator")))  # fmt: skip
            announce(precision.line())
            trainer: L.Trainer = instantiate(
                cfg.trainer, callbacks=callbacks, logger=loggers or False, precision=precision.precision,
                **_trainer_overrides(cfg, callbacks),
            )  # fmt: skip
            _log_config_once(cfg, loggers, module, datamodule)
            save_resolved_config(cfg)

            trainer.fit(module, datamodule=datamodule, ckpt_path=resume)

            summary: dict[str, Any] = {}
            if cfg.get("test_after_training", True) and not trainer.fast_dev_run:
                weights = _weights_to_test(cfg, trainer, last)
                trainer.loggers = fresh_csv_loggers(trainer.loggers)
                results = trainer.test(module, datamodule=datamodule, ckpt_path=weights["checkpoint"],
                                       weights_only=True, verbose=False)  # fmt: skip
                summary = summary_from_logged(results, datamodule.class_names, stage=module.test_stage)
                stages = _stages_record(cfg, callbacks)
                report(cfg, summary, datamodule.class_split.unseen_names, weights=weights, dataset=datamodule.name,
                       setting=cfg.setting, precision=precision.to_dict(),
                       **({"stages": stages} if stages else {}))  # fmt: skip
            finish_wandb(loggers)
    except (RunInterrupted, SIGTERMException) as err:
        if isinstance(err, SIGTERMException):  # Lightning's own handler got there first
            err = RunInterrupted(interrupts.received or 15, None, last.last_good)
        _finish(folder, "interrupted", error=str(err), last_checkpoint=last.last_good)
        raise err from None
    except BaseException as err:
        _finish(folder, "failed", error=f"{type(err).__name__}: {err}", last_checkpoint=last.last_good)
        raise
    _finish(folder, "finished", last_checkpoint=last.last_good)
    _announce_end(cfg, last.last_good)
    return summary


def _claim(cfg: DictConfig) -> run_folder.RunFolder | None:
    """Mark the run folder as this run's (launching process only; DDP children share it)."""
    if rank_zero_only.rank != 0:
        return None
    return run_folder.claim(output_dir(cfg), str(cfg.task_name))


@rank_zero_only
def _finish(folder: run_folder.RunFolder | None, status: str, **info: Any) -> None:
    if folder is not None:
        folder.finish(status, **info)


def _log_config_once(cfg: DictConfig, loggers: list[Any], module: L.LightningModule, datamodule: Any) -> None:
    """The resolved config goes to every logger once; Lightning would add the module's and the
    datamodule's hyper-parameters on top (a second, differently shaped copy)."""
    resolved = _resolved(cfg)
    for lg in loggers:
        lg.log_hyperparams(resolved)
    module._log_hyperparams = False
    datamodule._log_hyperparams = False


def _weights_to_test(cfg: DictConfig, trainer: L.Trainer, last: LastCheckpoint) -> dict[str, Any]:
    """Which checkpoint the test stage evaluates, and how it was chosen (recorded in metrics.json)."""
    if cfg.get("test_weights", "last") == "best":
        callback = next(cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None))
        path = getattr(callback, "best_model_path", "")
        if not path:
            raise RuntimeError(f"test_weights=best: no checkpoint was selected by {callback.monitor} (no validation ran?)")
        step = int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
        return {"checkpoint": path, "step": step,
                "selection": f"best {callback.monitor} on the validation split (opt-in)"}  # fmt: skip
    return {"checkpoint": str(last.path), "step": int(trainer.global_step),
            "selection": "final weights (last step)"}  # fmt: skip


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
    summary["split"] = stage  # "test", or "tune": the tuning split
    return summary


def finish_wandb(loggers: list[Any]) -> None:
    """Close the W&B run so the next run in this process (e.g. a multirun job) starts a new one."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()


# -- evaluate ----------------------------------------------------------------------------------


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
        raise ConfigError("eval.py needs ckpt_path=PATH (an official .pth, a converted file, a .ckpt, a run folder, or 'shapes')")
    folder = _claim(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    announce(f"[bold]run folder[/bold]: {output_dir(cfg)}")
    save_resolved_config(cfg)
    checkpoint = resolve_checkpoint(str(cfg.ckpt_path))
    try:
        with Interrupts(None) as interrupts:
            precision = choose(cfg.get("precision", "auto"), accelerator_device(cfg.trainer.get("accelerator")))
            announce(precision.line())
            model = zegclip.load(checkpoint, precision=precision)
            datamodule = instantiate(cfg.dataset)
            module = _evaluation_module(cfg, model, datamodule)
            module.plots_dir = str(output_dir(cfg))  # plots/*.png after the test
            loggers = build_loggers(cfg)
            trainer: L.Trainer = instantiate(
                cfg.trainer, logger=loggers or False, callbacks=[_progress_bar(), _InterruptCheck(interrupts)],
                plugins=[AtomicCheckpointIO()], enable_model_summary=False, enable_checkpointing=False,
            )  # fmt: skip
            results = trainer.test(module, datamodule=datamodule, verbose=False)
            summary = summary_from_logged(results, datamodule.class_names)
            finish_wandb(loggers)
    except (RunInterrupted, SIGTERMException) as err:
        if isinstance(err, SIGTERMException):
            err = RunInterrupted(15, None, None)
        _finish(folder, "interrupted", error=str(err))
        raise err from None
    except BaseException as err:
        _finish(folder, "failed", error=f"{type(err).__name__}: {err}")
        raise
    weights = {"checkpoint": checkpoint, "step": model.metadata.get("global_step", model.metadata.get("iter")),
               "selection": "given by ckpt_path"}  # fmt: skip
    report(cfg, summary, datamodule.class_split.unseen_names, weights=weights, dataset=datamodule.name, setting=module.setting,
           seen_bias=module.evaluation["seen_bias"], precision=precision.to_dict())  # fmt: skip
    _finish(folder, "finished")
    _announce_end(cfg, None)
    return summary


def _evaluation_module(cfg: DictConfig, model: Any, datamodule: Any) -> ZegCLIPModule:
    meta = model.metadata
    own_vocabulary = list(meta.get("class_names") or []) == list(datamodule.class_names)
    setting = cfg.get("setting") or meta.get("setting") or "inductive"
    evaluation = OmegaConf.to_container(cfg.evaluation, resolve=True)
    if evaluation.get("seen_bias") is None:
        # the checkpoint's calibration on its own classes; none across datasets unless configured
        evaluation["seen_bias"] = float(meta.get("seen_bias", default_seen_bias(setting))) if own_vocabulary else 0.0
    templates = cfg.text.templates or (meta.get("templates") if own_vocabulary else None) or "single"
    if cfg.text.get("cache_dir"):  # computed embeddings kept on disk (A-847: 847 x 15 prompts)
        model.text_encoder.cache_dir = Path(str(cfg.text.cache_dir))
    text_file = cfg.text.embedding_file or (meta.get("text_embedding_file") if own_vocabulary else None)
    if text_file and not Path(str(text_file)).is_file():
        announce(f"[yellow]text-embedding file {text_file} not found; computing embeddings with the text tower[/yellow]")
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


class _InterruptCheck(L.Callback):
    """Evaluation: stop at the next batch once a signal arrived (nothing to save)."""

    def __init__(self, interrupts: Interrupts) -> None:
        self.interrupts = interrupts

    def on_test_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.interrupts.received is not None:
            raise RunInterrupted(self.interrupts.received, None, None)


def _progress_bar() -> L.Callback:
    from zegclip.console import StepProgressBar

    return StepProgressBar()


# -- reporting ---------------------------------------------------------------------------------



@rank_zero_only
def report(cfg: DictConfig, summary: dict[str, Any], unseen_names: Sequence[str], **info: Any) -> None:
    """Print the per-class table and write ``metrics.json`` into the run folder."""
    if not summary:
        return
    split = summary.get("split", "test")
    where = ", tuning split" if split == "tune" else ""
    table = Table(title=f"{info.get('dataset')} ({info.get('setting')}{where}): IoU per class (%)")
    table.add_column("class")
    table.add_column("split")
    table.add_column("IoU", justify="right")
    unseen = set(unseen_names)
    for name, value in summary["IoU_per_class"].items():
        role = ("pseudo-unseen" if split == "tune" else "unseen") if name in unseen else "seen"
        table.add_row(name, role, "-" if value != value else f"{100 * value:.1f}")
    console.print(table)
    headline = "  ".join(
        f"{key}: {'-' if summary[key] != summary[key] else f'{100 * summary[key]:.1f}'}" for key in SUMMARY_KEYS
    )
    console.print(f"[bold]{headline}[/bold]")
    payload: dict[str, Any] = {k: json_number(summary[k]) for k in SUMMARY_KEYS}
    payload["IoU_per_class"] = {k: json_number(v) for k, v in summary["IoU_per_class"].items()}
    payload.update(info)
    payload["split"] = split  # "test", or "tune": the tuning split
    objective = objective_record(cfg, summary)
    if objective is not None:
        payload["objective"] = objective  # what train.py returned to a sweeper (optimized_metric)
    payload["seed"] = int(cfg.seed)
    payload["overrides"] = job_overrides()
    payload["run_dir"] = str(output_dir(cfg))
    path = write_text(output_dir(cfg) / "metrics.json", json.dumps(payload, indent=2), what="metrics")
    weights = info.get("weights") or {}
    for stage in info.get("stages") or []:
        if stage.get("checkpoint"):
            console.print(f"{stage['setting']} stage (steps {stage['first_step']}-{stage['last_step']}): {stage['checkpoint']}")
    console.print(f"tested: {weights.get('checkpoint')} ({weights.get('selection')}, step {weights.get('step')})")
    console.print(f"metrics: {path}")


@rank_zero_only
def _announce_end(cfg: DictConfig, last_checkpoint: str | None) -> None:
    if last_checkpoint:
        console.print(f"final weights: {last_checkpoint}")
    console.print(f"[bold]run folder[/bold]: {output_dir(cfg)}")



