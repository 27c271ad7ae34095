"""Fixtures of the integration tests (lightning-hydra-template style): composed Hydra configs with
every output in a pytest temporary folder, tiny synthetic datasets, tiny training runs shared by
the session. The helpers they use are in ``helpers.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig

from .helpers import (
    RunCache,
    compose_config,
    eval_overrides,
    make_all_datasets,
    one_torch_thread,
    train_overrides,
)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All synthetic datasets (VOC, COCO-Stuff, Context, custom), built once; read-only."""
    return make_all_datasets(tmp_path_factory.mktemp("data"))


@pytest.fixture()
def cfg_train(data_dir: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """``cfg_train(dataset, setting, *overrides, name="run")``: a composed tiny train config."""

    def make(dataset: str = "voc", setting: str = "inductive", *extra: str, name: str = "run") -> DictConfig:
        return compose_config("train", train_overrides(dataset, setting, data_dir, *extra), tmp_path / name)

    return make


@pytest.fixture()
def cfg_eval(data_dir: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """``cfg_eval(dataset, ckpt, *overrides, name="eval")``: a composed eval config."""

    def make(dataset: str, ckpt: Path | str, *extra: str, name: str = "eval") -> DictConfig:
        return compose_config("eval", eval_overrides(dataset, ckpt, data_dir, *extra), tmp_path / name)

    return make


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> RunCache:
    """Tiny training runs shared by all tests: ``runs.get(dataset, setting)`` trains on first use."""
    return RunCache(tmp_path_factory.mktemp("runs"), data_dir)
