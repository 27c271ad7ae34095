"""The one way the tests compose a Hydra config of ``conf/`` (lightning-hydra-template style)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import zegclip.engine.resolvers  # noqa: F401  (the ${zegclip.*} resolvers the configs use)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_config(
    config_name: str, overrides: Iterable[str] = (), out_dir: Path | None = None
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` as the entry point would, and set HydraConfig.

    With ``out_dir`` the run folder and every path under ``paths`` go there (tests never write into
    the repository); without it the config keeps the default paths (to check what users get).
    """
    paths: list[str] = []
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [
            f"hydra.run.dir={out_dir}",
            f"paths.root_dir={out_dir}",
            f"paths.log_dir={out_dir / 'logs'}",
            f"paths.output_dir={out_dir}",
        ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=[*paths, *overrides], return_hydra_config=True)
    HydraConfig().set_config(cfg)
    return cfg
