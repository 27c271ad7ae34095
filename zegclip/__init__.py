"""zegclip: ZegCLIP zero-shot semantic segmentation on PyTorch Lightning, Hydra and open_clip.

>>> import zegclip
>>> model = zegclip.load("path/to/checkpoint")           # doctest: +SKIP
>>> scores = model.segment(images, ["cat", "grass"])   # doctest: +SKIP

The public names are imported on first use, so that ``import zegclip`` (and the entry points'
``--help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "CLIPConfig": "zegclip.model.clip",
    "MULTI_TEMPLATES": "zegclip.model.text",
    "SINGLE_TEMPLATE": "zegclip.model.text",
    "ZegCLIP": "zegclip.model.zegclip",
    "ZegCLIPConfig": "zegclip.model.zegclip",
    "load": "zegclip.model.checkpoint",
    "save": "zegclip.model.checkpoint",
}

__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zegclip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
