"""The ZegCLIP model: CLIP loading, prompted ViT, text embeddings, decoder, loss, inference.

This package knows nothing of Lightning, Hydra or datasets.
"""

from zegclip.model.checkpoint import load, save
from zegclip.model.clip import CLIPConfig, create_clip
from zegclip.model.loss import FocalDiceLoss, LossOutput
from zegclip.model.official import convert_official
from zegclip.model.text import MULTI_TEMPLATES, SINGLE_TEMPLATE, TextEncoder, load_text_embeddings
from zegclip.model.zegclip import ZegCLIP, ZegCLIPConfig, ZegCLIPOutput

__all__ = [
    "CLIPConfig",
    "FocalDiceLoss",
    "LossOutput",
    "MULTI_TEMPLATES",
    "SINGLE_TEMPLATE",
    "TextEncoder",
    "ZegCLIP",
    "ZegCLIPConfig",
    "ZegCLIPOutput",
    "convert_official",
    "create_clip",
    "load",
    "load_text_embeddings",
    "save",
]
