"""Every config composes: experiments (the paper's recipes), trainers, loggers, debug, SLURM launcher."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from .helpers import CONF_DIR, PAPER, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (CONF_DIR / "trainer").glob("*.yaml"))
LOGGERS = sorted(p.stem for p in (CONF_DIR / "logger").glob("*.yaml"))
DEBUGS = sorted(p.stem for p in (CONF_DIR / "debug").glob("*.yaml"))
SETTINGS_DIR = sorted(p.stem for p in (CONF_DIR / "setting").glob("*.yaml"))
NAMED_EXPERIMENTS = {"coco_openvocab": ("dataset=coco", "setting=fully")}
"""Experiments with a name of their own (not ``<dataset>_<setting>``) and the recipe each equals."""
RECIPES = [e for e in EXPERIMENTS if e not in NAMED_EXPERIMENTS]


def split_name(experiment: str) -> tuple[str, str]:
    """``coco_transductive`` -> (``coco``, ``transductive``): dataset and setting from the file name."""
    dataset, setting = experiment.rsplit("_", 1)
    return dataset, setting


def compose_train(tmp_path: Path, *overrides: str):
    return compose_config("train", [f"paths.data_dir={tmp_path / 'data'}", *overrides], tmp_path / "out")


def resolve_all(cfg) -> None:
    """Every node outside ``hydra`` resolves (no dangling interpolation)."""
    for key in cfg:
        if key != "hydra" and OmegaConf.is_config(cfg[key]):
            OmegaConf.to_container(cfg[key], resolve=True, throw_on_missing=True)


def without_hydra(cfg) -> dict:
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}


def test_experiment_list_is_complete() -> None:
    assert len(EXPERIMENTS) >= 12
    for dataset in PAPER:
        for setting in SETTINGS_DIR:
            assert f"{dataset}_{setting}" in EXPERIMENTS


@pytest.mark.parametrize("experiment", RECIPES)
def test_every_experiment_composes(tmp_path: Path, experiment: str) -> None:
    dataset, setting = split_name(experiment)
    assert setting in SETTINGS_DIR, f"experiment {experiment}: unknown setting {setting!r}"
    # the experiment is selected from dataset and setting (defaults: experiment: ${dataset}_${setting})
    cfg = compose_train(tmp_path, f"dataset={dataset}", f"setting={setting}")
    assert cfg.hydra.runtime.choices.experiment == experiment
    assert cfg.setting == setting and cfg.dataset.name == dataset
    resolve_all(cfg)
    # ... and explicitly: the same config
    explicit = compose_train(tmp_path, f"dataset={dataset}", f"setting={setting}", f"experiment={experiment}")
    assert without_hydra(explicit) == without_hydra(cfg)
    if dataset in PAPER:
        recipe = PAPER[dataset]
        assert cfg.model.prompt_tokens == recipe["prompt_tokens"]
        assert cfg.text.templates == recipe["templates"]
        assert cfg.trainer.max_steps == recipe["max_steps"][setting]
        assert cfg.model.clip.model_name == "ViT-B-16" and cfg.model.clip.quick_gelu
        assert cfg.model.image_size == cfg.dataset.crop_size == 512
        assert cfg.dataset.batch_size == 4
        assert cfg.optimizer.lr == 2e-4 and cfg.optimizer.weight_decay == 0.01
        assert cfg.optimizer.warmup_steps == 1500 and cfg.optimizer.power == 0.9
        assert cfg.evaluation.mode == "slide"
    # model=tiny on the command line wins over the experiment's model, the recipe stays
    tiny = compose_train(tmp_path, f"dataset={dataset}", f"setting={setting}", "model=tiny")
    assert tiny.model.clip.model_name == "tiny"
    assert tiny.model.prompt_tokens == cfg.model.prompt_tokens


@pytest.mark.parametrize("experiment", sorted(NAMED_EXPERIMENTS))
def test_named_experiments_equal_the_recipe_they_name(tmp_path: Path, experiment: str) -> None:
    """``experiment=coco_openvocab`` is the COCO-Stuff fully supervised recipe, as its header says."""
    named = compose_train(tmp_path, f"experiment={experiment}")
    resolve_all(named)
    recipe = compose_train(tmp_path, *NAMED_EXPERIMENTS[experiment])
    assert without_hydra(named) == without_hydra(recipe)


def test_coco_transductive_is_selected_automatically(tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, "setting=transductive", "dataset=coco")
    assert cfg.hydra.runtime.choices.experiment == "coco_transductive"
    assert cfg.model.prompt_tokens == 100
    assert cfg.text.templates == "multi"
    assert cfg.trainer.max_steps == 40000
    assert cfg.init_from is None  # to be set by the user (the run refuses to start without it)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_trainer_composes(tmp_path: Path, trainer: str) -> None:
    cfg = compose_train(tmp_path, "dataset=voc", "model=tiny", f"trainer={trainer}")
    resolve_all(cfg)
    assert cfg.trainer._target_ == "lightning.pytorch.trainer.Trainer"
    assert cfg.trainer.default_root_dir == str(tmp_path / "out")
    assert cfg.trainer.max_steps == 20000  # the experiment's, not the trainer default's
    assert cfg.trainer.use_distributed_sampler is False  # the datamodule brings its samplers
    if cfg.trainer.accelerator in ("cpu", "auto"):  # no GPU here: instantiate only the CPU ones
        trainer_obj = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
        assert trainer_obj.max_steps == 20000
        assert trainer_obj.world_size == cfg.trainer.devices * cfg.trainer.num_nodes


@pytest.mark.parametrize("logger", LOGGERS)
def test_every_logger_composes(tmp_path: Path, logger: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose_train(tmp_path, "dataset=voc", "model=tiny", f"logger={logger}")
    resolve_all(cfg)
    assert len(cfg.logger) >= 1
    for name, node in cfg.logger.items():
        obj = instantiate(node)  # constructing a logger touches nothing (W&B starts on first use)
        assert type(obj).__name__.lower().startswith(name[:3])
        assert str(tmp_path / "out") in str(node.save_dir)


@pytest.mark.parametrize("debug", DEBUGS)
def test_every_debug_config_composes(tmp_path: Path, debug: str) -> None:
    cfg = compose_train(tmp_path, "dataset=voc", "model=tiny", f"debug={debug}")
    resolve_all(cfg)
    assert cfg.dataset.num_workers == 0 and cfg.trainer.max_steps <= 10  # over the experiment's values
    if debug == "fdr":
        assert cfg.trainer.fast_dev_run is True and cfg.test_after_training is False


def test_every_callback_instantiates(tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, "dataset=voc", "model=tiny")
    names = {type(instantiate(node)).__name__ for node in cfg.callbacks.values() if node is not None}
    assert names == {"LearningRateMonitor", "StepProgressBar", "ValidationReport"}
    assert (
        cfg.callbacks.best_checkpoint is None and cfg.test_weights == "last"
    )  # the fair protocol by default


def test_best_checkpoint_selection_is_opt_in_and_seen_only(tmp_path: Path) -> None:
    cfg = compose_train(tmp_path, "dataset=voc", "model=tiny", "callbacks=best", "test_weights=best")
    best = instantiate(cfg.callbacks.best_checkpoint)
    assert type(best).__name__ == "ModelCheckpoint" and best.monitor == "val/mIoU_seen"
    assert cfg.callbacks.best_checkpoint.dirpath == str(tmp_path / "out" / "checkpoints")


@pytest.mark.parametrize(("devices", "nodes"), [(4, 1), (2, 3)])
def test_slurm_launcher_composes(tmp_path: Path, devices: int, nodes: int) -> None:
    cfg = compose_train(
        tmp_path,
        "dataset=coco",
        "hydra/launcher=slurm",
        "trainer=ddp",
        f"trainer.devices={devices}",
        f"trainer.num_nodes={nodes}",
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.tasks_per_node == devices == cfg.trainer.devices
    assert launcher.gpus_per_node == devices
    assert launcher.nodes == nodes
    assert cfg.trainer.strategy == "ddp"
    resolve_all(cfg)


@pytest.mark.parametrize("dataset", ["voc", "coco", "context", "custom"])
def test_eval_config_composes(tmp_path: Path, dataset: str) -> None:
    cfg = compose_config(
        "eval", [f"dataset={dataset}", "ckpt_path=x.ckpt", f"paths.data_dir={tmp_path}"], tmp_path / "out"
    )
    resolve_all(cfg)
    assert cfg.dataset.name == dataset and cfg.setting is None and cfg.evaluation.seen_bias is None
    assert cfg.task_name == "eval" and cfg.text.templates is None
