"""What Hydra knows about the running job: its run folder, its overrides, whether it is a sweep job."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from zegclip.common.atomic import write_text
from zegclip.common.values import plain


def output_dir(cfg: DictConfig) -> Path:
    """The job's run folder (``paths.output_dir``)."""
    return Path(cfg.paths.output_dir)


def resolved(cfg: DictConfig) -> dict:
    """The config without Hydra's own node, every interpolation resolved (plain containers)."""
    return {k: plain(cfg[k]) for k in cfg if k != "hydra"}


@rank_zero_only
def save_resolved_config(cfg: DictConfig) -> None:
    """Write the fully resolved config (Hydra's .hydra/config.yaml keeps the interpolations)."""
    write_text(
        output_dir(cfg) / "config_resolved.yaml", OmegaConf.to_yaml(resolved(cfg)), what="resolved config"
    )


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
