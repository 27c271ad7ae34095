"""Test-only views of the shapes world: a plain torch Dataset and the world written in the VOC layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from zegclip.common.constants import IGNORE_INDEX
from zegclip.data.shapes import ShapesWorld, Vocabulary, sample_name
from zegclip.model.preprocess import normalize as normalize_image

# JPEG quality 95 without chroma subsampling (the grain would otherwise cost ~9 grey levels).
_JPEG_PARAMS = [
    cv2.IMWRITE_JPEG_QUALITY,
    95,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
]


class ShapesDataset(Dataset):
    """A fixed-length slice of a :class:`ShapesWorld` in the segmentation batch format.

    Item ``i`` is world sample ``start + i``. Each item is a dict with ``image`` (float (3, H, W),
    ImageNet-normalised RGB), ``label`` (long (H, W), class ids, ``IGNORE_INDEX`` = ignore) and ``meta``
    (``name``, ``image_path`` None, ``ori_size`` and ``img_size`` (H, W)), as the real datasets.

    With ``flip=True`` an item is mirrored left-right with probability 0.5, decided by
    ``(seed, index, epoch)``: call :meth:`set_epoch` each epoch for fresh flips (with DataLoader
    workers, before the loader is iterated and without ``persistent_workers``).

    Args:
        length: number of items.
        vocabulary, image_size, seed, min_objects, max_objects: see :class:`ShapesWorld`.
        flip: random horizontal flips (training augmentation).
        start: index of the first world sample (use disjoint ranges or seeds for train/val).
    """

    def __init__(
        self,
        length: int,
        vocabulary: Vocabulary | str = "compositional",
        image_size: int = 64,
        seed: int = 0,
        flip: bool = False,
        start: int = 0,
        min_objects: int = 1,
        max_objects: int = 3,
    ) -> None:
        if length < 0 or start < 0:
            raise ValueError(f"length and start must be >= 0, got {length}, {start}")
        self.world = ShapesWorld(vocabulary, image_size, seed, min_objects, max_objects)
        self.length = int(length)
        self.start = int(start)
        self.flip = bool(flip)
        self.epoch = 0

    @property
    def vocabulary(self) -> Vocabulary:
        return self.world.vocabulary

    @property
    def class_names(self) -> list[str]:
        return self.world.vocabulary.class_names

    def set_epoch(self, epoch: int) -> None:
        """Change the flip draws (only matters with ``flip=True``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for ShapesDataset of length {self.length}")
        index = self.start + i
        image, label = self.world.sample(index)
        if self.flip:
            rng = np.random.default_rng([self.world.seed, index, self.epoch, 0x5EED])
            if rng.random() < 0.5:
                image, label = image[:, ::-1], label[:, ::-1]
        size = (self.world.image_size, self.world.image_size)
        return {
            "image": normalize_image(image),
            "label": torch.from_numpy(np.ascontiguousarray(label)).long(),
            "meta": {
                "name": sample_name(self.world, index),
                "image_path": None,
                "ori_size": size,
                "img_size": size,
            },
        }


def write_voc_layout(
    world: ShapesWorld, root: str | Path, n_train: int, n_val: int, image_format: str = "jpg"
) -> Path:
    """Write ``n_train + n_val`` samples of ``world`` to disk in the PASCAL VOC layout.

    Layout under ``root``::

        VOCdevkit/VOC2012/JPEGImages/<id>.jpg        RGB image (``image_format="png"``: lossless .png)
        VOCdevkit/VOC2012/SegmentationClass/<id>.png 8-bit grey label
        VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt   one id a line
        VOCdevkit/VOC2012/shapes_world.json          vocabulary, class names, split, seed, size

    Label encoding (VOC style, simple on purpose): 0 = background, ``class_id + 1`` for object
    pixels, so a VOC reader that drops background (0 -> ignore, c -> c - 1) gets back exactly the
    in-memory labels (class id, ignore = background). Train ids are samples ``0..n_train-1``, val ids
    ``n_train..n_train+n_val-1`` of the same world. JPEG is lossy (quality 95, 4:4:4: mean error ~3 grey
    levels); labels are exact.

    Returns:
        The ``VOCdevkit/VOC2012`` directory.
    """
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if world.vocabulary.num_classes > 254:
        raise ValueError("VOC label encoding holds at most 254 classes")
    base = Path(root) / "VOCdevkit" / "VOC2012"
    img_dir, lbl_dir, set_dir = (
        base / "JPEGImages",
        base / "SegmentationClass",
        base / "ImageSets" / "Segmentation",
    )
    for d in (img_dir, lbl_dir, set_dir):
        d.mkdir(parents=True, exist_ok=True)
    splits = {"train": range(0, n_train), "val": range(n_train, n_train + n_val)}
    for split, indices in splits.items():
        names = []
        for index in indices:
            image, label = world.sample(index)
            name = sample_name(world, index)
            encoded = np.where(label == IGNORE_INDEX, 0, label.astype(np.int32) + 1).astype(np.uint8)
            params = _JPEG_PARAMS if image_format == "jpg" else []
            if not cv2.imwrite(str(img_dir / f"{name}.{image_format}"), image[..., ::-1], params):
                raise OSError(f"could not write {img_dir / name}.{image_format}")
            if not cv2.imwrite(str(lbl_dir / f"{name}.png"), encoded):
                raise OSError(f"could not write {lbl_dir / name}.png")
            names.append(name)
        (set_dir / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    _write_world_info(base / "shapes_world.json", world, image_format, n_train, n_val)
    return base


def _write_world_info(path: Path, world: ShapesWorld, image_format: str, n_train: int, n_val: int) -> None:
    vocab = world.vocabulary
    info = {
        "vocabulary": vocab.name,
        "class_names": vocab.class_names,
        "unseen": list(vocab.unseen),
        "seed": world.seed,
        "image_size": world.image_size,
        "objects": [world.min_objects, world.max_objects],
        "label_encoding": "0 = background, class_id + 1 = object",
        "image_format": image_format,
        "n_train": n_train,
        "n_val": n_val,
    }
    path.write_text(json.dumps(info, indent=2) + "\n")
