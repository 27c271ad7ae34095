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
study evaluated object pixels only; the VOC layout on disk writes background as 0). Where objects overlap,
the one drawn last is on top.

Rendering follows the feasibility study (docs/data.md, "The shapes world") at 64x64; at another
``image_size`` every length scales with ``image_size / 64``. Pure numpy + OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from zegclip.common.constants import IGNORE_INDEX
from zegclip.common.errors import ConfigError
from zegclip.data.shapes.vocabulary import COLOURS, Vocabulary, get_vocabulary

# Shapes whose rotation is kept small (they read as "upright" objects); the others turn freely.
_SMALL_ROTATION = {"triangle": math.radians(20.0), "heart": math.radians(20.0)}

# Rendering constants (at 64x64; lengths scale with image_size / 64).
_REF_SIZE = 64
_RADIUS_RANGE = (8.5, 14.0)
_MIN_SEPARATION = 0.85  # centre distance >= this x (r1 + r2): objects may touch, not overlap heavily
_PLACEMENT_TRIES = 30
_SUBPIXEL_SHIFT = 4  # OpenCV fixed-point bits for polygon/circle coordinates


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
            raise ConfigError(f"Need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
        if image_size < 16:
            raise ConfigError(f"image_size must be >= 16, got {image_size}")
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


def sample_name(world: ShapesWorld, index: int) -> str:
    """A stable name for sample ``index`` of ``world``, e.g. ``shapes_compositional_s0_000042``."""
    return f"shapes_{world.vocabulary.name}_s{world.seed}_{index:06d}"
