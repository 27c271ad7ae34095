"""What a dataset asks the text side to embed: its prompts and the label class each one predicts.

By default the prompts are the class names, one per class. A benchmark may score more prompts
than it has label classes: VOC-20b (CAT-Seg) has 21 label classes (the 20 VOC classes and
background, class 20) but embeds 59 names, the 20 VOC names and 39 PASCAL Context names that
stand for the background; the model scores all 59 and the per-pixel argmax is mapped through
``prompt_to_class`` (``[0..19] + [20] * 39``), so that a prediction of any extra name counts as
background (CAT-Seg's ``VOCbEvaluator``: ``pred[pred >= 20] = 20``).

The dataset config records which list it used (``dataset.vocabulary``, a file of
:mod:`zegclip.data.vocabularies`) and how synonyms inside a name are embedded
(``dataset.text_synonyms``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zegclip.data.errors import ClassSplitError
from zegclip.data.vocabularies import load_vocabulary

SYNONYM_RULES = ("average", "first")
"""``dataset.text_synonyms`` values besides null (the text side's rules, ``zegclip.model.text``)."""


@dataclass(frozen=True)
class TextPrompts:
    """Validated prompts: ``prompts[p]`` predicts label class ``prompt_to_class[p]``."""

    prompts: tuple[str, ...]
    prompt_to_class: tuple[int, ...]
    synonyms: str | None = None
    vocabulary: dict[str, Any] | None = None

    @property
    def identity(self) -> bool:
        """True when prompt p is class p (no extra prompts)."""
        return self.prompt_to_class == tuple(range(len(self.prompts)))


def _as_class_ids(values: Sequence[Any], num_classes: int, num_prompts: int) -> tuple[int, ...]:
    if len(values) != num_prompts:
        raise ClassSplitError(
            f"`prompt_to_class` has {len(values)} entries but there are {num_prompts} text prompts: "
            "expected one label class per prompt"
        )
    out = []
    for p, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < num_classes:
            raise ClassSplitError(
                f"`prompt_to_class[{p}]` is {v!r}: expected a class index 0..{num_classes - 1} "
                f"({num_classes} label classes)"
            )
        out.append(v)
    return tuple(out)


def build_text_prompts(
    class_names: Sequence[str],
    text_prompts: Sequence[str] | None = None,
    prompt_to_class: Sequence[int] | None = None,
    vocabulary: str | Path | None = None,
    synonyms: str | None = None,
) -> TextPrompts:
    """Check the prompts against the label classes and the recorded vocabulary.

    Raises:
        ClassSplitError: naming the key: empty or duplicate prompts, a ``prompt_to_class`` of
            the wrong length or with an index out of range, a label class no prompt predicts,
            prompts that differ from ``vocabulary``'s list, an unknown synonym rule.
    """
    num_classes = len(class_names)
    prompts = tuple(str(p) for p in (class_names if text_prompts is None else text_prompts))
    if not prompts or any(not p.strip() for p in prompts):
        raise ClassSplitError("`text_prompts` must be a non-empty list of non-empty names")
    duplicates = sorted({p for p in prompts if prompts.count(p) > 1})
    if duplicates:
        raise ClassSplitError(f"`text_prompts` lists {duplicates[:5]} more than once")
    if prompt_to_class is None:
        if len(prompts) != num_classes:
            raise ClassSplitError(
                f"{len(prompts)} text prompts for {num_classes} label classes: give `prompt_to_class` "
                "(the label class each prompt predicts)"
            )
        mapping = tuple(range(num_classes))
    else:
        mapping = _as_class_ids(list(prompt_to_class), num_classes, len(prompts))
    without = sorted(set(range(num_classes)) - set(mapping))
    if without:
        names = [class_names[i] for i in without[:5]]
        raise ClassSplitError(
            f"label classes {without[:10]} ({names}) have no text prompt: every class needs at least one "
            "entry of `prompt_to_class`"
        )
    if synonyms is not None and synonyms not in SYNONYM_RULES:
        raise ClassSplitError(
            f"`text_synonyms` must be null or one of {list(SYNONYM_RULES)}, got {synonyms!r}"
        )
    record = None
    if vocabulary is not None:
        vocab = load_vocabulary(vocabulary)
        if tuple(p.strip() for p in prompts) != vocab.classes:
            diff = next(
                (i for i, (a, b) in enumerate(zip(prompts, vocab.classes)) if a.strip() != b),
                min(len(prompts), len(vocab.classes)),
            )
            raise ClassSplitError(
                f"the text prompts differ from vocabulary {vocab.name!r} ({vocab.path}) at entry {diff} "
                f"({len(prompts)} prompts, {len(vocab.classes)} names in the file): set `vocabulary` to the "
                "list the prompts come from, or null"
            )
        record = vocab.describe()
    return TextPrompts(prompts, mapping, synonyms, record)
