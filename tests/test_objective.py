"""optimized_metric: what train.py returns to a sweeper, and the rule that no zero-shot search may
optimise a test-split (unseen-label) metric without the loudly named override."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra_compose import CONF_DIR, compose_config
from omegaconf import OmegaConf

from zegclip.engine.objective import (
    BASIC_SWEEPER,
    ObjectiveError,
    check_objective,
    objective_record,
    objective_value,
)

OPTUNA = "hydra_plugins.zegclip_study.study_sweeper.ZegclipOptunaSweeper"
ABSENT = object()
SEARCHES = sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))


def cfg(*overrides: str):
    return compose_config("train", overrides)


def test_test_split_objective_is_refused_in_zero_shot_settings() -> None:
    for setting in ("inductive", "transductive"):
        with pytest.raises(ObjectiveError, match="test split") as err:
            check_objective(cfg(f"setting={setting}", "optimized_metric=test/hIoU"))
        assert "tune/hIoU" in str(err.value) and "allow_unfair_objective" in str(err.value)
    with pytest.raises(ObjectiveError, match="test split"):
        check_objective(cfg("optimized_metric=test/mIoU_seen"))  # seen classes, but still the test split


def test_the_loud_override_and_the_fully_supervised_setting_allow_it(capsys) -> None:
    check_objective(cfg("optimized_metric=test/hIoU", "allow_unfair_objective=true"))
    assert "not zero-shot" in capsys.readouterr().out
    check_objective(cfg("setting=fully", "optimized_metric=test/hIoU"))  # nothing unseen to protect
    fully = cfg("setting=fully", "optimized_metric=test/hIoU")
    assert objective_record(fully, {"hIoU": 0.5, "split": "test"}) == {
        "name": "test/hIoU",
        "value": 0.5,
        "fair": True,
    }
    unfair = cfg("optimized_metric=test/hIoU", "allow_unfair_objective=true")
    assert objective_record(unfair, {"hIoU": 0.5, "split": "test"})["fair"] is False


def test_objectives_need_their_split() -> None:
    with pytest.raises(ObjectiveError, match="add tuning=pseudo_unseen"):
        check_objective(cfg("optimized_metric=tune/hIoU"))
    with pytest.raises(ObjectiveError, match="never reads the test split"):
        check_objective(cfg("tuning=pseudo_unseen", "optimized_metric=test/hIoU"))
    with pytest.raises(ObjectiveError, match="expected <split>/<metric>"):
        check_objective(cfg("tuning=pseudo_unseen", "optimized_metric=val/hIoU"))
    with pytest.raises(ObjectiveError, match="test_after_training must be true"):
        check_objective(cfg("tuning=pseudo_unseen", "test_after_training=false"))
    with pytest.raises(ObjectiveError, match="embedding_file"):
        check_objective(cfg("tuning=pseudo_unseen", "text.embedding_file=/x.npy"))
    check_objective(cfg("tuning=pseudo_unseen"))  # its default objective: tune/hIoU
    assert cfg("tuning=pseudo_unseen").optimized_metric == "tune/hIoU"


def test_default_returns_nothing_and_an_optimising_sweeper_needs_an_objective() -> None:
    default = cfg()
    assert default.optimized_metric is None
    assert objective_value(default, {"hIoU": 0.7, "split": "test"}) is None  # not the test hIoU any more
    check_objective(default, BASIC_SWEEPER)  # seed sweeps return nothing and need nothing
    for sweeper in (OPTUNA, "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"):
        with pytest.raises(ObjectiveError, match="optimized_metric is null"):
            check_objective(default, sweeper)


def test_objective_value_reads_its_own_split() -> None:
    tuning = cfg("tuning=pseudo_unseen")
    assert objective_value(tuning, {"hIoU": 0.25, "split": "tune"}) == 0.25
    assert math.isnan(
        objective_value(tuning, {"hIoU": math.nan, "split": "tune"})
    )  # a failed trial for Optuna
    with pytest.raises(ObjectiveError, match="evaluated on the test split"):
        objective_value(tuning, {"hIoU": 0.25, "split": "test"})


def test_train_refuses_before_anything_runs(tmp_path: Path) -> None:
    from zegclip.engine.train import train

    run = tmp_path / "run"
    config = compose_config("train", ["optimized_metric=test/hIoU"], run)
    with pytest.raises(ObjectiveError, match="test split"):
        train(config)
    assert not (run / "run.json").exists() and not (run / "checkpoints").exists()


@pytest.mark.parametrize("search", SEARCHES)
def test_every_search_config_is_a_fair_study(search: str) -> None:
    config = cfg(f"hparams_search={search}")
    dataset = search.removesuffix("_optuna")
    assert config.dataset.name == dataset and config.tuning == "pseudo_unseen"
    assert config.dataset._target_ == "zegclip.data.tuning.PseudoUnseenDataModule"
    assert config.optimized_metric == "tune/hIoU"
    check_objective(config, OPTUNA)
    sweeper = config.hydra.sweeper
    assert sweeper._target_ == OPTUNA and sweeper.direction == "maximize"
    assert str(sweeper.storage) == f"sqlite:///{config.hydra.sweep.dir}/optuna.db"
    assert Path(str(config.hydra.sweep.dir)).name == sweeper.study_name == f"{dataset}_inductive"
    for key in sweeper.params:  # every searched key exists in the config (++ adds a loss argument)
        if not key.startswith("++"):
            assert OmegaConf.select(config, key, default=ABSENT) is not ABSENT, key
    assert {"optimizer.lr", "optimizer.weight_decay", "model.prompt_tokens", "evaluation.seen_bias"} <= set(
        sweeper.params
    )


def test_search_configs_refuse_a_test_split_objective() -> None:
    with pytest.raises(ObjectiveError, match="never reads the test split"):
        check_objective(cfg("hparams_search=shapes_optuna", "optimized_metric=test/hIoU"), OPTUNA)
