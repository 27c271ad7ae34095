"""Small conversions of configuration and result values, shared by every layer."""

from __future__ import annotations

import math
from typing import Any


def plain(value: Any) -> Any:
    """OmegaConf containers (from Hydra) as plain lists / dicts, resolved; anything else as is."""
    try:
        from omegaconf import OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        return value
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def json_number(value: Any) -> Any:
    """NaN (an undefined metric) as ``None`` for JSON; anything else as is."""
    return None if isinstance(value, float) and math.isnan(value) else value
