"""The shapes world: a procedural zero-shot segmentation benchmark that needs no files.

Every image is drawn from a seed: a textured, noisy background and 1-3 coloured shapes of
random size, position and rotation, with a per-pixel label map. ``(seed, index)`` fixes an
image completely (the same on any process or worker); another seed gives another world.

Vocabularies (class names are plain English, so a CLIP text tower can name them):

* ``compositional`` (default, "task A"): 4 colours x {circle, square, triangle, star} = 16
  classes such as ``"red circle"``. Unseen: a Latin square (red circle, green square, blue
  triangle, yellow star), so each unseen class's colour and shape both occur among seen classes.
* ``shapes`` ("task B", harder): the 8 shape names (any colour); star and ring are unseen.
* ``all``: all 4 x 8 colour-shape pairs, no unseen classes (the world the tiny CLIP is
  pretrained on, see ``tools/pretrain_shapes_clip.py``).

Label convention (the same as the real datasets after their conversion): object pixels carry
the 0-based class id in the vocabulary, background pixels are ``IGNORE_INDEX`` (ignored, as the
study evaluated object pixels only; the VOC layout on disk writes background as 0). Where objects overlap, the one drawn last is on top.

Rendering follows the feasibility study (docs/data.md, "The shapes world") at 64x64; at another
``image_size`` every length scales with ``image_size / 64``. Pure numpy + OpenCV.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from zegclip.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from zegclip.data.datasets import SegmentationDataset
from zegclip.data.errors import ClassSplitError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 70, 230),
    "yellow": (230, 210, 40),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "heart")
# Shapes whose rotation is kept small (they read as "upright" objects); the others turn freely.
_SMALL_ROTATION = {"triangle": math.radians(20.0), "heart": math.radians(20.0)}

# Rendering constants (at 64x64; lengths scale with image_size / 64).
_REF_SIZE = 64
_RADIUS_RANGE = (8.5, 14.0)
_MIN_SEPARATION = 0.85  # centre distance >= this x (r1 + r2): objects may touch, not overlap heavily
_PLACEMENT_TRIES = 30
_SUBPIXEL_SHIFT = 4  # OpenCV fixed-point bits for polygon/circle coordinates
# JPEG quality 95 without chroma subsampling (the grain would otherwise cost ~9 grey levels).
_JPEG_PARAMS = [
    cv2.IMWRITE_JPEG_QUALITY,
    95,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
    cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
]


@dataclass(frozen=True)
class ShapeClass:
    """One class of a vocabulary: a shape, optionally of one colour (None: any colour)."""

    name: str
    shape: str
    colour: str | None


@dataclass(frozen=True)
class Vocabulary:
    """A set of named classes with a seen/unseen split.

    Attributes:
        name: vocabulary name (``compositional``, ``shapes``, ``all``).
        classes: the classes, in class-id order.
        unseen: 0-based ids of the classes never labelled in (inductive) training.
    """

    name: str
    classes: tuple[ShapeClass, ...]
    unseen: tuple[int, ...]

    @property
    def class_names(self) -> list[str]:
        """Plain English class names, in class-id order (e.g. ``"red circle"``)."""
        return [c.name for c in self.classes]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def seen(self) -> list[int]:
        """0-based ids of the seen classes."""
        return [i for i in range(len(self.classes)) if i not in set(self.unseen)]

    @property
    def shapes(self) -> list[str]:
        """The shapes this vocabulary's objects can have (first-appearance order)."""
        return list(dict.fromkeys(c.shape for c in self.classes))

    def class_id(self, shape: str, colour: str) -> int:
        """The class of an object with this shape and colour."""
        for i, c in enumerate(self.classes):
            if c.shape == shape and c.colour in (None, colour):
                return i
        raise KeyError(f"No class for a {colour} {shape} in vocabulary {self.name!r}")


def _colour_shape_vocabulary(name: str, shapes: tuple[str, ...], unseen: list[tuple[str, str]]) -> Vocabulary:
    classes = tuple(ShapeClass(f"{c} {s}", s, c) for c in COLOURS for s in shapes)
    names = [c.name for c in classes]
    return Vocabulary(name, classes, tuple(sorted(names.index(f"{c} {s}") for c, s in unseen)))


COMPOSITIONAL = _colour_shape_vocabulary(
    "compositional",
    ("circle", "square", "triangle", "star"),
    [("red", "circle"), ("green", "square"), ("blue", "triangle"), ("yellow", "star")],
)
SHAPES_ONLY = Vocabulary(
    "shapes",
    tuple(ShapeClass(s, s, None) for s in SHAPES),
    (SHAPES.index("star"), SHAPES.index("ring")),
)
ALL_COLOUR_SHAPES = _colour_shape_vocabulary("all", SHAPES, [])
VOCABULARIES: dict[str, Vocabulary] = {v.name: v for v in (COMPOSITIONAL, SHAPES_ONLY, ALL_COLOUR_SHAPES)}


def get_vocabulary(name: str | Vocabulary) -> Vocabulary:
    """A vocabulary by name (``compositional``, ``shapes``, ``all``); a Vocabulary passes through."""
    if isinstance(name, Vocabulary):
        return name
    if name not in VOCABULARIES:
        raise ValueError(f"Unknown shapes vocabulary {name!r}; choose one of {sorted(VOCABULARIES)}")
    return VOCABULARIES[name]


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene: its class, look and placement (pixel units, x right, y down)."""

    class_id: int
    shape: str
    colour: str
    centre: tuple[float, float]
    radius: float
    angle: float  # radians

    @property
    def description(self) -> str:
        """``"<colour> <shape>"``, e.g. ``"red circle"``."""
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    """A rendered sample: ``image`` uint8 (H, W, 3) RGB, ``label`` uint16 (H, W), its objects."""

    image: np.ndarray
    label: np.ndarray
    objects: list[ShapeObject]


class ShapesWorld:
    """A deterministic, endless stream of shapes scenes.

    Args:
        vocabulary: a :class:`Vocabulary` or its name.
        image_size: side of the square images, in pixels (64 as in the study).
        seed: the world's seed; sample ``index`` of world ``seed`` is always the same image.
        min_objects, max_objects: how many objects a scene tries to hold (uniform; an object
            that finds no free place after a few tries is left out, but never the first).
    """

    def __init__(
        self,
        vocabulary: Vocabulary | str = "compositional",
        image_size: int = 64,
        seed: int = 0,
        min_objects: int = 1,
        max_objects: int = 3,
    ) -> None:
        if not 1 <= min_objects <= max_objects:
            raise ValueError(f"Need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {image_size}")
        self.vocabulary = get_vocabulary(vocabulary)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.min_objects = int(min_objects)
        self.max_objects = int(max_objects)
        self._scale = self.image_size / _REF_SIZE

    def __repr__(self) -> str:
        return (
            f"ShapesWorld(vocabulary={self.vocabulary.name!r}, image_size={self.image_size}, "
            f"seed={self.seed}, objects={self.min_objects}-{self.max_objects})"
        )

    # -- randomness -------------------------------------------------------------------------
    def _rngs(self, index: int) -> tuple[np.random.Generator, np.random.Generator]:
        """(layout rng, paint rng) for sample ``index``; the layout alone is cheap to redraw."""
        if index < 0:
            raise IndexError(f"Sample index must be >= 0, got {index}")
        layout, paint = np.random.SeedSequence([self.seed, int(index)]).spawn(2)
        return np.random.default_rng(layout), np.random.default_rng(paint)

    # -- public API -------------------------------------------------------------------------
    def objects(self, index: int) -> list[ShapeObject]:
        """The objects of sample ``index`` (class, colour, shape, placement), without rendering."""
        return self._layout(self._rngs(index)[0])

    def render(self, index: int) -> Scene:
        """Render sample ``index``: image, label map and objects."""
        layout_rng, paint_rng = self._rngs(index)
        objects = self._layout(layout_rng)
        image = self._background(paint_rng)
        label = np.full((self.image_size, self.image_size), IGNORE_INDEX, dtype=np.uint16)
        for obj in objects:
            mask = self._mask(obj)
            base = np.asarray(COLOURS[obj.colour], dtype=np.float32)
            colour = (base + paint_rng.normal(0.0, 12.0, 3)) * paint_rng.uniform(0.8, 1.1)
            n = int(mask.sum())
            image[mask] = colour + paint_rng.normal(0.0, 6.0, (n, 3))
            label[mask] = obj.class_id
        return Scene(np.clip(np.rint(image), 0, 255).astype(np.uint8), label, objects)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 (H, W, 3) RGB, label uint16 (H, W))``; label ``IGNORE_INDEX`` = background."""
        scene = self.render(index)
        return scene.image, scene.label

    # -- internals --------------------------------------------------------------------------
    def _layout(self, rng: np.random.Generator) -> list[ShapeObject]:
        vocab = self.vocabulary
        size = self.image_size
        n = int(rng.integers(self.min_objects, self.max_objects + 1))
        placed: list[ShapeObject] = []
        for k in range(n):
            class_id = int(rng.integers(vocab.num_classes))
            cls = vocab.classes[class_id]
            colour = cls.colour if cls.colour is not None else list(COLOURS)[int(rng.integers(len(COLOURS)))]
            max_turn = _SMALL_ROTATION.get(cls.shape, math.pi)
            angle = float(rng.uniform(-max_turn, max_turn))
            for _ in range(_PLACEMENT_TRIES):
                radius = float(rng.uniform(*_RADIUS_RANGE)) * self._scale
                cx, cy = rng.uniform(radius, size - radius, 2)
                if all(
                    math.hypot(cx - o.centre[0], cy - o.centre[1]) >= _MIN_SEPARATION * (radius + o.radius)
                    for o in placed
                ):
                    placed.append(
                        ShapeObject(class_id, cls.shape, colour, (float(cx), float(cy)), radius, angle)
                    )
                    break
            else:
                if k == 0:  # cannot happen with an empty canvas; kept as a guard
                    raise RuntimeError("could not place the first object")
        return placed

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        size = self.image_size
        grey = rng.uniform(70.0, 170.0)
        tint = rng.uniform(-25.0, 25.0, 3)
        field = rng.normal(0.0, 1.0, (8, 8)).astype(np.float32)
        low = cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC) * rng.uniform(10.0, 35.0)
        grain = rng.normal(0.0, rng.uniform(4.0, 18.0), (size, size, 3))
        return (grey + tint + low[..., None] + grain).astype(np.float32)

    def _mask(self, obj: ShapeObject) -> np.ndarray:
        """Boolean (H, W) mask of one object."""
        size = self.image_size
        canvas = np.zeros((size, size), dtype=np.uint8)
        f = float(1 << _SUBPIXEL_SHIFT)
        cx, cy = obj.centre
        r = obj.radius

        def fix(points: np.ndarray) -> np.ndarray:
            """Rotate, translate and convert unit-radius points (K, 2) to OpenCV fixed point."""
            c, s = math.cos(obj.angle), math.sin(obj.angle)
            x = points[:, 0] * c - points[:, 1] * s
            y = points[:, 0] * s + points[:, 1] * c
            out = np.stack([cx + r * x, cy + r * y], axis=1)
            return np.rint(out * f).astype(np.int32).reshape(-1, 1, 2)

        def disc(x: float, y: float, radius: float, value: int) -> None:
            c, s = math.cos(obj.angle), math.sin(obj.angle)
            px, py = cx + r * (x * c - y * s), cy + r * (x * s + y * c)
            centre = (round(px * f), round(py * f))
            cv2.circle(canvas, centre, round(radius * r * f), value, -1, cv2.LINE_8, _SUBPIXEL_SHIFT)

        shape = obj.shape
        if shape == "circle":
            disc(0.0, 0.0, 1.0, 1)
        elif shape == "ring":
            disc(0.0, 0.0, 1.0, 1)
            disc(0.0, 0.0, 0.55, 0)
        elif shape == "crescent":
            disc(0.0, 0.0, 1.0, 1)
            disc(0.45, -0.1, 0.85, 0)
        else:
            cv2.fillPoly(canvas, [fix(_POLYGONS[shape])], 1, cv2.LINE_8, _SUBPIXEL_SHIFT)
        return canvas.astype(bool)


def _regular_polygon(k: int, radius: float, start: float) -> np.ndarray:
    t = start + np.arange(k) * 2.0 * math.pi / k
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    t = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    rad = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([rad * np.cos(t), rad * np.sin(t)], axis=1)


def _cross(arm: float = 0.34) -> np.ndarray:
    a, b = arm, 1.0
    return np.array(
        [
            [-a, -b],
            [a, -b],
            [a, -a],
            [b, -a],
            [b, a],
            [a, a],
            [a, b],
            [-a, b],
            [-a, a],
            [-b, a],
            [-b, -a],
            [-a, -a],
        ]
    )


def _heart(n: int = 48) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))  # y down
    pts = np.stack([x, y + 2.5], axis=1)  # centre the bounding box vertically
    return pts / 16.5


# Unit-radius outlines (x right, y down), scaled by the object radius and rotated by its angle.
_POLYGONS: dict[str, np.ndarray] = {
    "square": _regular_polygon(4, 0.82 * math.sqrt(2.0), math.pi / 4),
    "triangle": _regular_polygon(3, 1.1, -math.pi / 2),
    "star": _star(),
    "cross": _cross(),
    "heart": _heart(),
}


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float (3, H, W), ImageNet mean/std on the 0-255 scale."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


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
            raise ValueError(f"shapes: unknown split {split!r}, expected one of {sorted(ranges)}")
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


def sample_name(world: ShapesWorld, index: int) -> str:
    """A stable name for sample ``index`` of ``world``, e.g. ``shapes_compositional_s0_000042``."""
    return f"shapes_{world.vocabulary.name}_s{world.seed}_{index:06d}"


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
    ``n_train..n_train+n_val-1`` of the same world. JPEG is lossy (quality 95, 4:4:4: mean error ~3 grey levels); labels are exact.

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
