"""Class lists and seen / unseen splits, validated at start-up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zegclip.data.errors import ClassSplitError


@dataclass(frozen=True)
class ClassSplit:
    """Validated class names with their seen and unseen (0-based) indices.

    ``seen`` and ``unseen`` are sorted, disjoint and together cover ``range(num_classes)``.
    """

    class_names: tuple[str, ...]
    seen: tuple[int, ...]
    unseen: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def unseen_names(self) -> tuple[str, ...]:
        return tuple(self.class_names[i] for i in self.unseen)


def _as_indices(values: Sequence[int], key: str, num_classes: int) -> tuple[int, ...]:
    out: list[int] = []
    for v in values:
        # bool is an int subclass; a float like 3.0 is a config typo, not an index
        if isinstance(v, bool) or not isinstance(v, int):
            raise ClassSplitError(f"`{key}` must hold integer class indices, got {v!r} ({type(v).__name__})")
        if not 0 <= v < num_classes:
            raise ClassSplitError(
                f"`{key}` index {v} is out of range: expected 0..{num_classes - 1} "
                f"(0-based, {num_classes} classes)"
            )
        out.append(v)
    dup = sorted({v for v in out if out.count(v) > 1})
    if dup:
        raise ClassSplitError(f"`{key}` lists indices more than once: {dup}")
    return tuple(sorted(out))


def build_class_split(
    class_names: Sequence[str],
    unseen: Sequence[int] = (),
    seen: Sequence[int] | None = None,
    expected_num_classes: int | None = None,
) -> ClassSplit:
    """Validate a class list and a zero-shot split.

    Args:
        class_names: names in the dataset's class-id order.
        unseen: 0-based indices of unseen classes (may be empty: fully supervised).
        seen: 0-based indices of seen classes; ``None`` means all the others.
        expected_num_classes: the number of classes the dataset's labels encode, if known.

    Raises:
        ClassSplitError: on empty or duplicate names, a wrong class count, out-of-range or
            duplicate indices, overlapping seen / unseen, or a union that misses classes.
    """
    if isinstance(class_names, str):
        raise ClassSplitError("`class_names` must be a list of names, got a single string")
    names = tuple(class_names)
    if not names:
        raise ClassSplitError("`class_names` is empty")
    for i, n in enumerate(names):
        if not isinstance(n, str) or not n.strip():
            raise ClassSplitError(f"`class_names[{i}]` must be a non-empty string, got {n!r}")
    dup_names = sorted({n for n in names if names.count(n) > 1})
    if dup_names:
        raise ClassSplitError(f"`class_names` holds duplicates: {dup_names}")
    if expected_num_classes is not None and len(names) != expected_num_classes:
        raise ClassSplitError(
            f"`class_names` has {len(names)} entries but the dataset's labels encode "
            f"{expected_num_classes} classes"
        )
    n = len(names)
    unseen_t = _as_indices(unseen or (), "unseen", n)
    if seen is None:
        seen_t = tuple(i for i in range(n) if i not in set(unseen_t))
    else:
        seen_t = _as_indices(seen, "seen", n)
    both = sorted(set(seen_t) & set(unseen_t))
    if both:
        raise ClassSplitError(f"`seen` and `unseen` overlap: {both} ({[names[i] for i in both]})")
    missing = sorted(set(range(n)) - set(seen_t) - set(unseen_t))
    if missing:
        raise ClassSplitError(
            f"`seen` + `unseen` must cover all {n} classes; missing {missing} ({[names[i] for i in missing]})"
        )
    if not seen_t:
        raise ClassSplitError("no seen class: at least one class must be seen")
    return ClassSplit(class_names=names, seen=seen_t, unseen=unseen_t)


def read_class_names(path: str | Path) -> list[str]:
    """Read a class-names file: one name per line, blank lines and ``#`` comments skipped."""
    p = Path(path)
    if not p.is_file():
        raise ClassSplitError(f"class-names file not found: {p} (expected one class name per line)")
    names = []
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(line)
    if not names:
        raise ClassSplitError(f"class-names file {p} holds no name (expected one class name per line)")
    return names
