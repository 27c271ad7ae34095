"""zegclip: ZegCLIP zero-shot semantic segmentation on PyTorch Lightning, Hydra and open_clip.

>>> import zegclip
>>> model = zegclip.load("path/to/checkpoint")           # doctest: +SKIP
>>> scores = model.segment(images, ["cat", "grass"])   # doctest: +SKIP
"""

from zegclip.model.checkpoint import load, save
from zegclip.model.clip import CLIPConfig
from zegclip.model.text import MULTI_TEMPLATES, SINGLE_TEMPLATE
from zegclip.model.zegclip import ZegCLIP, ZegCLIPConfig

__all__ = ["CLIPConfig", "MULTI_TEMPLATES", "SINGLE_TEMPLATE", "ZegCLIP", "ZegCLIPConfig", "load", "save"]
__version__ = "0.1.0"
