"""Values every layer shares (model, data, metrics, pictures): one home each."""

IGNORE_INDEX = 65535
"""Label of pixels that no loss or metric counts (padding, unlabelled, unseen in inductive training).

65535, not 255: A-847 and PC-459 have class ids above 254 (the peers' 16-bit convention). Label
maps on disk keep their own ignore value (255 in 8-bit maps, 65535 in 16-bit ones); the datasets'
label tables decode it to this value, so class ids travel as uint16 (or wider) arrays."""

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
"""Normalisation of 0-255 RGB pixels, as the official configs (docs/data.md §5)."""
