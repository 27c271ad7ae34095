"""The tuning split (``tuning=pseudo_unseen``): choose hyper-parameters without the test split and
without an unseen-class label (SPEC.md §9, the class-disjoint validation of zero-shot learning).

From a benchmark's zero-shot split it builds a smaller one:

* the **true unseen classes are dropped**: their names never reach the model (no text), their
  pixels become ignore (``IGNORE_INDEX``) in every image;
* a deterministic subset of the **seen** classes, about the same fraction as unseen / all and
  chosen by ``tuning_seed``, becomes **pseudo-unseen**: in the tuning run it plays the unseen
  classes' part (inductive: no label and no text in training; transductive: names only);
* a deterministic fraction of the **training images** is held out; the run validates and is
  finally evaluated on them (pseudo-unseen as unseen, the seen-class offset as usual), so the
  benchmark's val / test split is never read.

Class ids are renumbered: the tuning vocabulary is the benchmark's seen classes in their order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from zegclip.common.constants import IGNORE_INDEX
from zegclip.common.values import plain
from zegclip.data.datamodule import SegmentationDataModule
from zegclip.data.errors import ClassSplitError, EmptySplitError
from zegclip.data.splits import ClassSplit, build_class_split


@dataclass(frozen=True)
class TuningSplit:
    """The tuning vocabulary derived from a benchmark's split.

    Attributes:
        source: the benchmark's split; pseudo_unseen: the source ids (seen classes) evaluated
        as unseen.
    """

    source: ClassSplit
    pseudo_unseen: tuple[int, ...]

    @property
    def source_ids(self) -> tuple[int, ...]:
        """Source class id of each tuning class (the tuning class ids are the positions)."""
        return self.source.seen

    @property
    def class_split(self) -> ClassSplit:
        """The split the tuning run trains and evaluates: seen - pseudo-unseen / pseudo-unseen."""
        names = [self.source.class_names[i] for i in self.source_ids]
        position = {c: k for k, c in enumerate(self.source_ids)}
        return build_class_split(names, [position[c] for c in self.pseudo_unseen])

    def label_lut(self) -> torch.Tensor:
        """``(IGNORE_INDEX + 1,)`` long: source id -> tuning id; true unseen classes and ignore -> ignore."""
        lut = torch.full((max(self.source.num_classes, IGNORE_INDEX + 1),), IGNORE_INDEX, dtype=torch.long)
        lut[torch.as_tensor(self.source_ids)] = torch.arange(len(self.source_ids))
        return lut


def default_pseudo_unseen_count(split: ClassSplit) -> int:
    """About ``len(unseen) / num_classes`` of the seen classes, at least 1, leaving one to train on."""
    count = round(len(split.seen) * len(split.unseen) / split.num_classes)
    return min(max(1, count), len(split.seen) - 1)


def build_tuning_split(
    split: ClassSplit, pseudo_unseen: Sequence[int] | None = None, count: int | None = None, seed: int = 0
) -> TuningSplit:
    """The tuning split of a zero-shot ``split``.

    Args:
        split: the benchmark's split (must have unseen classes).
        pseudo_unseen: source ids of seen classes to hold out; ``None``: ``count`` of them drawn
            with ``seed``.
        count: how many to draw (``None``: :func:`default_pseudo_unseen_count`).
        seed: the draw's seed (the same seed always gives the same classes).
    """
    if not split.unseen:
        raise ClassSplitError(
            "tuning=pseudo_unseen needs a zero-shot split: dataset.unseen is empty, so there is no unseen "
            "class whose part pseudo-unseen classes could play (list the unseen classes in dataset.unseen)"
        )
    if len(split.seen) < 2:
        raise ClassSplitError(f"tuning=pseudo_unseen needs at least 2 seen classes, got {len(split.seen)}")
    if pseudo_unseen is not None:
        chosen = [int(c) for c in plain(pseudo_unseen)]
        bad = sorted(set(chosen) - set(split.seen))
        if bad:
            raise ClassSplitError(
                f"dataset.pseudo_unseen={chosen}: {bad} are not seen classes (expected 0-based ids among "
                f"dataset.seen, e.g. {list(split.seen[:5])}); unseen classes stay out of a tuning run"
            )
        if len(set(chosen)) != len(chosen) or not chosen or len(chosen) >= len(split.seen):
            raise ClassSplitError(
                f"dataset.pseudo_unseen={chosen}: expected 1 to {len(split.seen) - 1} distinct seen classes"
            )
        return TuningSplit(split, tuple(sorted(chosen)))
    n = default_pseudo_unseen_count(split) if count is None else int(count)
    if not 1 <= n < len(split.seen):
        raise ClassSplitError(f"dataset.pseudo_unseen_count={n}: expected 1 to {len(split.seen) - 1}")
    rng = np.random.default_rng([int(seed), 0x7E57])
    chosen = rng.choice(np.asarray(split.seen), size=n, replace=False)
    return TuningSplit(split, tuple(sorted(int(c) for c in chosen)))


def holdout_indices(
    n: int, fraction: float, seed: int = 0, max_images: int | None = None
) -> tuple[list[int], list[int]]:
    """``(train, held_out)`` indices of ``n`` training images: ``round(fraction * n)`` images (at
    least 1, at most ``max_images``) drawn with ``seed``, both lists sorted."""
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"dataset.holdout_fraction must be in (0, 1), got {fraction}")
    k = max(1, round(float(fraction) * n))
    if max_images is not None:
        if int(max_images) < 1:
            raise ValueError(f"dataset.holdout_max_images must be >= 1 or null, got {max_images}")
        k = min(k, int(max_images))
    if k >= n:
        raise EmptySplitError(
            f"tuning=pseudo_unseen: holding out {k} of {n} training images leaves none to train on "
            "(lower dataset.holdout_fraction or use more training images)"
        )
    order = np.random.default_rng([int(seed), n, 0x401D]).permutation(n)
    return sorted(int(i) for i in order[k:]), sorted(int(i) for i in order[:k])


class RemappedSubset(Subset):
    """Items ``indices`` of ``dataset`` with their label ids mapped through ``lut`` (source ->
    tuning ids). A ``Subset``, so that data verification and augmentation seeding see the base."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], lut: torch.Tensor) -> None:
        super().__init__(dataset, list(indices))
        self.lut = lut

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[self.indices[index]]
        label = sample["label"]
        if not torch.is_tensor(label):  # no transform: a uint16 array
            label = torch.from_numpy(np.ascontiguousarray(label))
        return dict(sample, label=self.lut[label.long()])

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:  # Subset's own would skip the mapping
        return [self[i] for i in indices]


class PseudoUnseenDataModule(SegmentationDataModule):
    """:class:`SegmentationDataModule` on the tuning split (module docstring): train on the
    training images not held out, validate and test on the held-out ones; only the layout's
    ``train`` split is ever built.

    Args (besides those of :class:`SegmentationDataModule`):
        holdout_fraction: share of the training images held out for evaluation.
        holdout_max_images: at most this many held-out images (null: no cap).
        pseudo_unseen: source ids of the pseudo-unseen classes (null: drawn).
        pseudo_unseen_count: how many to draw (null: about unseen / all of the seen classes).
        tuning_seed: seed of both draws (classes and images); not the training seed, so that
            every trial of a search sees the same split.
    """

    evaluation_name = "tune"
    """Prefix of the metrics of the final evaluation (``tune/hIoU``): not the test split."""

    def __init__(
        self,
        *args: Any,
        holdout_fraction: float = 0.1,
        holdout_max_images: int | None = None,
        pseudo_unseen: Sequence[int] | None = None,
        pseudo_unseen_count: int | None = None,
        tuning_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tuning = build_tuning_split(self.class_split, pseudo_unseen, pseudo_unseen_count, tuning_seed)
        self.source_split = self.class_split
        self.class_split = self.tuning.class_split
        self.benchmark = self.name
        self.name = f"{self.name}-tuning"
        self.holdout_fraction = float(holdout_fraction)
        self.holdout_max_images = holdout_max_images
        self.tuning_seed = int(tuning_seed)
        self._lut = self.tuning.label_lut()
        self._indices: tuple[list[int], list[int]] | None = None

    def describe(self) -> str:
        """One line for the log: which classes are pseudo-unseen, which are left out."""
        names = self.source_split.class_names
        pseudo = ", ".join(names[i] for i in self.tuning.pseudo_unseen)
        return (
            f"tuning split of {self.benchmark}: pseudo-unseen {pseudo}; {len(self.source_split.unseen)} "
            f"unseen classes left out; {self.holdout_fraction:g} of the training images held out (seed "
            f"{self.tuning_seed})"
        )

    def build_split(self, split: str, train: bool) -> Dataset:
        if split != "train":  # the guarantee: a tuning run never reads the benchmark's val / test split
            raise RuntimeError(f"a tuning run reads only the training split, not {split!r}")
        from zegclip.data.transforms import build_test_transform, build_train_transform

        transform = (
            build_train_transform(**self.train_transform_kwargs)
            if train
            else build_test_transform(**self.test_transform_kwargs)
        )
        return self.layout(
            self.root,
            "train",
            transform=transform,
            num_classes=self.source_split.num_classes,
            reduce_zero_label=self.reduce_zero_label,
        )

    def _split(self, dataset: Dataset) -> tuple[list[int], list[int]]:
        if self._indices is None:
            n = len(dataset)  # type: ignore[arg-type]
            self._indices = holdout_indices(
                n, self.holdout_fraction, self.tuning_seed, self.holdout_max_images
            )
        return self._indices

    def _held_out(self) -> Dataset:
        images = self.build_split("train", train=False)
        return RemappedSubset(images, self._split(images)[1], self._lut)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_dataset is None:
            images = self.build_split("train", train=True)
            self.train_dataset = RemappedSubset(images, self._split(images)[0], self._lut)
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            val = self._held_out()
            if self.val_limit is not None and self.val_limit < len(val):
                n, k = len(val), self.val_limit
                val = Subset(val, [i * n // k for i in range(k)])
            self.val_dataset = val
        if stage in (None, "test", "predict") and self.test_dataset is None:
            self.test_dataset = self._held_out()
