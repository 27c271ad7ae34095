"""The shapes world as a dataset in the datamodule's format
(``layout: zegclip.data.shapes.build_shapes_dataset``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zegclip.common.errors import ConfigError
from zegclip.data.datasets import SegmentationDataset
from zegclip.data.errors import ClassSplitError
from zegclip.data.shapes.vocabulary import Vocabulary
from zegclip.data.shapes.world import ShapesWorld, sample_name


class ShapesSegmentationDataset(SegmentationDataset):
    """The shapes world as a :class:`~zegclip.data.datasets.SegmentationDataset` layout.

    For :class:`~zegclip.data.SegmentationDataModule` (``layout:
    zegclip.data.shapes.build_shapes_dataset``): the datamodule's transforms (flip, normalise,
    pad) apply as for the real datasets. Train, val and test are disjoint index ranges of one
    world: ``[0, train_size)``, then ``val_size``, then ``test_size`` samples. ``root`` is unused.
    Without a transform an item holds the uint8 image (H, W, 3) and uint16 label (H, W).
    """

    layout = "shapes"
    REDUCE_ZERO_LABEL = False  # labels are class ids, IGNORE_INDEX = background

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        *,
        transform: Any = None,
        num_classes: int | None = None,
        reduce_zero_label: bool | None = None,
        vocabulary: Vocabulary | str = "compositional",
        world_seed: int = 0,
        train_size: int = 20000,
        val_size: int = 200,
        test_size: int = 1000,
        image_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 3,
    ) -> None:
        world = ShapesWorld(vocabulary, image_size, world_seed, min_objects, max_objects)
        n = world.vocabulary.num_classes
        if num_classes is not None and int(num_classes) != n:
            raise ClassSplitError(
                f"shapes: vocabulary {world.vocabulary.name!r} has {n} classes, got num_classes={num_classes}"
            )
        if reduce_zero_label:
            raise ClassSplitError(
                "shapes: labels are class ids with background ignored; use reduce_zero_label=false"
            )
        ranges = {
            "train": (0, train_size),
            "val": (train_size, val_size),
            "test": (train_size + val_size, test_size),
        }
        if split not in ranges:
            raise ConfigError(f"shapes: unknown split {split!r}, expected one of {sorted(ranges)}")
        super().__init__([], n, False, transform)
        self.world = world
        self.split = split
        self.start, self.length = (int(v) for v in ranges[split])

    def __len__(self) -> int:
        return self.length

    def load_sample(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for the shapes {self.split} split of {self.length}")
        image, label = self.world.sample(self.start + index)
        meta = {
            "name": sample_name(self.world, self.start + index),
            "image_path": None,
            "label_path": None,
            "ori_size": (int(image.shape[0]), int(image.shape[1])),
        }
        return {"image": image, "label": label, "meta": meta}


build_shapes_dataset = ShapesSegmentationDataset  # the name the Hydra data configs use as ``layout``
