"""The shapes world: a procedural zero-shot segmentation benchmark that needs no files.

:mod:`~zegclip.data.shapes.vocabulary` (class names, seen / unseen), :mod:`~zegclip.data.shapes.world`
(rendering a scene from a seed) and :mod:`~zegclip.data.shapes.dataset` (the datamodule's layout).
"""

from zegclip.data.shapes.dataset import ShapesSegmentationDataset, build_shapes_dataset
from zegclip.data.shapes.vocabulary import (
    ALL_COLOUR_SHAPES,
    COLOURS,
    COMPOSITIONAL,
    SHAPES,
    SHAPES_ONLY,
    VOCABULARIES,
    ShapeClass,
    Vocabulary,
    get_vocabulary,
)
from zegclip.data.shapes.world import Scene, ShapeObject, ShapesWorld, sample_name

__all__ = [
    "ALL_COLOUR_SHAPES",
    "COLOURS",
    "COMPOSITIONAL",
    "SHAPES",
    "SHAPES_ONLY",
    "VOCABULARIES",
    "Scene",
    "ShapeClass",
    "ShapeObject",
    "ShapesSegmentationDataset",
    "ShapesWorld",
    "Vocabulary",
    "build_shapes_dataset",
    "get_vocabulary",
    "sample_name",
]
