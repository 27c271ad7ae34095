"""Values every layer shares (model, data, metrics, pictures): one home each."""

IGNORE_INDEX = 255
"""Label of pixels that no loss or metric counts (padding, unlabelled, unseen in inductive training)."""

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
"""Normalisation of 0-255 RGB pixels, as the official configs (docs/data.md §5)."""
