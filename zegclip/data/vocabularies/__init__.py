"""The open-vocabulary benchmarks' class lists, as data files with their source named.

Each ``<name>.json`` beside this module holds ``{"name", "benchmark", "source", "synonyms",
"classes"}`` (``ade847.json`` also the ADE20K-full object id of every class). The lists keep the
peers' spellings (CAT-Seg's ``datasets/*.json``), synonyms included: an entry ``"a, b"`` names
one class by two synonyms. The dataset configs read them with ``${zegclip.vocabulary:<name>}``;
how synonyms become one text embedding is the text side's rule (``dataset.text_synonyms``,
:func:`zegclip.model.text.split_synonyms`).

Names are stripped of surrounding white space (CAT-Seg's A-150 ``"bed "``: CLIP's tokenizer
gives both spellings the same tokens, so the text embeddings are unchanged).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from zegclip.data.errors import ClassSplitError

FOLDER = Path(__file__).resolve().parent
NAMES = ("ade150", "ade847", "pc459", "pc59", "voc20", "voc20b")
"""The vocabularies shipped with the package (``<name>.json`` in :data:`FOLDER`)."""


@dataclass(frozen=True)
class VocabularyFile:
    """One class list: its names in class-id order and where it comes from."""

    name: str
    source: str
    classes: tuple[str, ...]
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What a run records about the list it used: name, file, source, size."""
        return {
            "name": self.name,
            "file": str(self.path),
            "source": self.source,
            "classes": len(self.classes),
        }


def vocabulary_path(name: str | Path) -> Path:
    """The file of a shipped vocabulary (``"ade150"``) or a path to one's own ``.json``."""
    if str(name) in NAMES:
        return FOLDER / f"{name}.json"
    path = Path(str(name))
    if path.suffix == ".json":
        return path
    raise ClassSplitError(
        f"no vocabulary named {str(name)!r}: expected one of {list(NAMES)} or a path to a .json file"
    )


@cache
def _read(path: Path) -> VocabularyFile:
    if not path.is_file():
        raise ClassSplitError(f"vocabulary file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ClassSplitError(f"vocabulary file {path} is not valid JSON: {e}") from e
    if isinstance(data, list):  # a bare list of names, as CAT-Seg's files
        data = {"classes": data}
    classes = data.get("classes") if isinstance(data, dict) else None
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) and c.strip() for c in classes)
    ):
        raise ClassSplitError(
            f"vocabulary file {path}: expected a non-empty list of class names under 'classes' "
            "(or a JSON list of names)"
        )
    names = tuple(c.strip() for c in classes)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ClassSplitError(f"vocabulary file {path}: class names {duplicates[:5]} appear more than once")
    extra = {k: v for k, v in data.items() if k not in ("name", "source", "classes")}
    return VocabularyFile(
        str(data.get("name") or path.stem), str(data.get("source") or path), names, path, extra
    )


def load_vocabulary(name: str | Path) -> VocabularyFile:
    """Read a vocabulary: a shipped one by name (see :data:`NAMES`) or a ``.json`` file."""
    return _read(vocabulary_path(name).resolve())
