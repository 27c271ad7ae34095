"""Class names as users type them: ``"cat, dog,, grass"`` or a list, and seen classes by name or index.

The one parser for the prediction app, the demo and the ONNX export.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zegclip.common.errors import ConfigError


def split_names(value: Any) -> list[str]:
    """Class names from a comma-separated string or a list, stripped, empty ones dropped
    (``" cat, dog,, grass ,"`` -> ``["cat", "dog", "grass"]``; None -> ``[]``)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [name.strip() for name in items if name.strip()]


def resolve_seen(seen: Any, class_names: Sequence[str]) -> list[int]:
    """Seen classes given as indices and/or names (a list, or one comma-separated string) -> indices.

    Raises:
        ConfigError: an unknown name or an index out of range (named in the message).
    """
    items = [seen] if isinstance(seen, (str, int)) else list(seen)
    if len(items) == 1 and isinstance(items[0], str) and "," in items[0]:
        items = split_names(items[0])
    out = []
    for item in items:
        if isinstance(item, int) or (isinstance(item, str) and item.strip().isdigit()):
            index = int(item)
            if not 0 <= index < len(class_names):
                raise ConfigError(f"seen: index {index} is out of range for {len(class_names)} classes")
        else:
            name = str(item).strip()
            if name not in class_names:
                raise ConfigError(f"seen: {name!r} is not one of the classes {list(class_names)}")
            index = list(class_names).index(name)
        out.append(index)
    return out
