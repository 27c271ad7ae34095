"""Class names of the benchmarks, in the official order and spelling (one home for each list).

The index of a name is its class id. The released text embeddings were computed from exactly
these spellings ("diningtable", "tvmonitor", "building-other", ...), so they must not be
"corrected". The dataset configs read them with ``${zegclip.class_names:<dataset>}``.
"""

from __future__ import annotations

from zegclip.common.errors import ConfigError

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus",
    "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

COCO_STUFF_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus",
    "train", "truck", "boat", "traffic light", "fire hydrant", "stop sign",
    "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "wine glass", "cup",
    "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge",
    "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter",
    "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence",
    "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower",
    "fog", "food-other", "fruit", "furniture-other", "grass", "gravel",
    "ground-other", "hill", "house", "leaves", "light", "mat",
    "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin",
    "net", "paper", "pavement", "pillow", "plant-other", "plastic",
    "platform", "playingfield", "railing", "railroad", "river", "road",
    "rock", "roof", "rug", "salad", "sand", "sea",
    "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs",
    "stone", "straw", "structural-other", "table", "tent", "textile-other",
    "towel", "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other",
    "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other", "waterdrops",
    "window-blind", "window-other", "wood",
)

CONTEXT59_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle",
    "bird", "boat", "book", "bottle", "building", "bus",
    "cabinet", "car", "cat", "ceiling", "chair", "cloth",
    "computer", "cow", "cup", "curtain", "dog", "door",
    "fence", "floor", "flower", "food", "grass", "ground",
    "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock",
    "sheep", "shelves", "sidewalk", "sign", "sky", "snow",
    "sofa", "table", "track", "train", "tree", "truck",
    "tvmonitor", "wall", "water", "window", "wood",
)


VOC20B_CLASSES = (*VOC_CLASSES, "background")
"""VOC-20b's 21 label classes: background kept as class 20 (its text prompts: vocabularies/voc20b.json)."""

BENCHMARKS: dict[str, tuple[str, ...]] = {
    "voc": VOC_CLASSES, "coco": COCO_STUFF_CLASSES, "context": CONTEXT59_CLASSES, "voc20b": VOC20B_CLASSES,
}  # fmt: skip


def class_names(dataset: str) -> list[str]:
    """The class names of ``voc``, ``coco``, ``context``, ``voc20b`` (VOC + background), ``shapes``
    (the compositional shapes vocabulary) or ``shapes_hard`` (the shape-only one). The
    open-vocabulary lists (A-150, A-847, PC-459, ...) are files: :mod:`zegclip.data.vocabularies`."""
    if dataset in BENCHMARKS:
        return list(BENCHMARKS[dataset])
    if dataset in SHAPES_VOCABULARIES:
        from zegclip.data.shapes import get_vocabulary

        return get_vocabulary(SHAPES_VOCABULARIES[dataset]).class_names
    raise ConfigError(f"no class list named {dataset!r}: expected one of {sorted([*BENCHMARKS, *SHAPES_VOCABULARIES])}")


SHAPES_VOCABULARIES = {"shapes": "compositional", "shapes_hard": "shapes"}


def unseen_classes(dataset: str) -> list[int]:
    """The unseen classes of a shapes vocabulary (the benchmarks' splits are in their configs)."""
    if dataset not in SHAPES_VOCABULARIES:
        raise ConfigError(f"unseen_classes: expected one of {sorted(SHAPES_VOCABULARIES)}, got {dataset!r}")
    from zegclip.data.shapes import get_vocabulary

    return list(get_vocabulary(SHAPES_VOCABULARIES[dataset]).unseen)
