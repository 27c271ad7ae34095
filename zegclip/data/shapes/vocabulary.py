"""The shapes world's vocabularies: colour x shape class names and their seen / unseen split."""

from __future__ import annotations

from dataclasses import dataclass

from zegclip.common.errors import ConfigError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 70, 230),
    "yellow": (230, 210, 40),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "heart")


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
        raise ConfigError(f"Unknown shapes vocabulary {name!r}; choose one of {sorted(VOCABULARIES)}")
    return VOCABULARIES[name]
