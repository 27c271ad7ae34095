"""``SegmentationDataModule``: datasets, transforms and loaders for one segmentation dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from zegclip.common.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from zegclip.common.errors import ConfigError
from zegclip.common.values import plain
from zegclip.data.errors import ClassSplitError
from zegclip.data.io import make_label_lut
from zegclip.data.loading import (
    ResumableDataLoader,
    SeededSamples,
    ShardedEvalSampler,
    StreamProgress,
    TrainStream,
    collate_segmentation,
    derive_seed,
    seed_worker,
)
from zegclip.data.prompts import TextPrompts, build_text_prompts
from zegclip.data.splits import ClassSplit, build_class_split, read_class_names
from zegclip.data.transforms import build_test_transform, build_train_transform
from zegclip.data.vocabularies import load_vocabulary


class SegmentationDataModule(L.LightningDataModule):
    """Train / val / test loaders for a semantic-segmentation dataset with a zero-shot split.

    Batches are ``{"image": float (B, 3, H, W), "label": long (B, H, W) with ``IGNORE_INDEX``
    (65535) = ignore,
    "meta": list of dicts}``; meta holds ``name``, ``image_path``, ``label_path``, ``ori_size``
    (H, W of the original image) and ``img_size`` (h, w of the resized image before padding).
    Train images are augmented and padded to ``crop_size``. Val / test images are resized so that
    their short side is ``test_short_side``; their labels stay at the original resolution; a
    batch pads images with 0 and labels with ``IGNORE_INDEX`` to its largest sizes.

    Labels are the dataset's 0-based class ids whatever the setting: mapping unseen pixels to
    ignore (inductive training) is the model's job.

    Training stream: a :class:`TrainStream` sampler shuffles per epoch (Lightning calls its
    ``set_epoch``) and seeds every sample's augmentation from (seed, epoch, position), so the
    stream is the same with any number of loader workers and is reproducible from the seed. The
    training loader is stateful: checkpoints record the epoch and position the training loop
    reached (from the batches it consumed), and a resumed run continues the same stream at that
    point, also mid-epoch.

    Multi-GPU: when attached to a trainer with ``world_size > 1`` rank ``r`` trains on every
    ``world``-th sample of the epoch's permutation, and val / test use a
    :class:`ShardedEvalSampler` that gives each rank a disjoint contiguous shard with no padding,
    so that every image is evaluated exactly once. Create the trainer with
    ``use_distributed_sampler=False``. Ranks may get one batch more or less in evaluation: do not
    call collective ops per validation step (``self.log(..., sync_dist=True)`` per step); sum
    metric states at epoch end (torchmetrics does).

    Args:
        layout: builds the dataset of a split: ``layout(root, split, *, transform, num_classes,
            reduce_zero_label)``, e.g. :class:`~zegclip.data.VOCDataset` or, from a config, a Hydra
            partial with the layout's own options bound (``conf/dataset/*.yaml``: ``layout``).
        root: data root (``paths.data_dir``) holding the layout's tree.
        class_names: names in class-id order; or ``class_names_file`` (one per line, relative
            to ``root`` unless absolute).
        unseen: 0-based unseen class indices; ``seen`` defaults to all the others.
        name: display name (defaults to the layout's name).
        reduce_zero_label: label decoding (raw 0 = background -> ignore, k -> k-1); ``None``
            uses the layout's fixed rule (VOC / Context true, COCO false).
        crop_size, scale, ratio_range, cat_max_ratio, flip_prob, photometric: training pipeline.
        test_short_side: short side of val / test images.
        batch_size: training batch size per device; ``eval_batch_size`` for val / test.
        val_limit: evaluate only this many validation images (evenly spaced) for quick checks.
        seed: base seed of shuffling and augmentation.
        vocabulary: the class list the text prompts come from, recorded with the result: a file
            of :mod:`zegclip.data.vocabularies` (``"ade150"``) or a ``.json`` path; the class
            names too when neither ``class_names`` nor ``class_names_file`` is given.
        text_prompts: the P names the text side embeds (default: the class names).
        prompt_to_class: the label class each prompt predicts (P ints; default: prompt p is
            class p). VOC-20b: 59 prompts, the last 39 all predict background (class 20).
        text_synonyms: how names listing synonyms (``"a, b"``) are embedded: null (the whole
            string), ``average`` (CAT-Seg's rule) or ``first``. See :mod:`zegclip.data.prompts`.
    """

    def __init__(
        self,
        layout: Callable[..., Dataset],
        root: str | Path = "data",
        class_names: Sequence[str] | None = None,
        unseen: Sequence[int] = (),
        seen: Sequence[int] | None = None,
        name: str | None = None,
        class_names_file: str | Path | None = None,
        reduce_zero_label: bool | None = None,
        crop_size: int | Sequence[int] = 512,
        scale: Sequence[int] = (2048, 512),
        ratio_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        flip_prob: float = 0.5,
        photometric: bool = True,
        test_short_side: int = 512,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        val_limit: int | None = None,
        seed: int = 0,
        vocabulary: str | Path | None = None,
        text_prompts: Sequence[str] | None = None,
        prompt_to_class: Sequence[int] | None = None,
        text_synonyms: str | None = None,
    ) -> None:
        super().__init__()
        if not callable(layout):
            raise ConfigError(
                f"layout must build a dataset (a dataset class or a Hydra partial), got {layout!r}"
            )
        self.layout = layout
        self.root = Path(str(root))
        self.name = name or getattr(getattr(layout, "func", layout), "layout", None) or "custom"
        if class_names is None and class_names_file is None and vocabulary is not None:
            class_names = load_vocabulary(str(vocabulary)).classes
        self.class_split: ClassSplit = self._build_class_split(class_names, class_names_file, unseen, seen)
        self.text: TextPrompts = build_text_prompts(
            self.class_names, plain(text_prompts), plain(prompt_to_class), plain(vocabulary), text_synonyms
        )
        self.reduce_zero_label = reduce_zero_label
        self._validate_label_decoding()
        mean, std = tuple(plain(mean)), tuple(plain(std))
        self.train_transform_kwargs = {
            "crop_size": plain(crop_size),
            "scale": tuple(plain(scale)),
            "ratio_range": tuple(plain(ratio_range)),
            "cat_max_ratio": cat_max_ratio,
            "flip_prob": flip_prob,
            "photometric": photometric,
            "mean": mean,
            "std": std,
        }
        self.test_transform_kwargs = {"short_side": test_short_side, "mean": mean, "std": std}
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError(f"batch sizes must be >= 1, got {batch_size} / {eval_batch_size}")
        if val_limit is not None and val_limit < 1:
            raise ConfigError(f"val_limit must be >= 1 or null, got {val_limit}")
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.num_workers, self.pin_memory = int(num_workers), bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.val_limit = val_limit
        self.seed = int(seed)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self.stream_progress = StreamProgress()

    def _build_class_split(
        self,
        class_names: Sequence[str] | None,
        class_names_file: str | Path | None,
        unseen: Sequence[int],
        seen: Sequence[int] | None,
    ) -> ClassSplit:
        if class_names is None:
            if class_names_file is None:
                raise ConfigError("give `class_names` or `class_names_file`")
            path = Path(str(class_names_file))
            class_names = read_class_names(path if path.is_absolute() else self.root / path)
        expected = getattr(getattr(self.layout, "func", self.layout), "NUM_CLASSES", None)
        return build_class_split(
            plain(class_names), plain(unseen) or (), plain(seen), expected_num_classes=expected
        )

    def _validate_label_decoding(self) -> None:
        """Check at start-up that the layout accepts this label decoding and class count."""
        layout = getattr(self.layout, "func", self.layout)
        resolve = getattr(layout, "_resolve_label_args", None)
        rzl = self.reduce_zero_label
        if resolve is not None:
            _, rzl = resolve(self.num_classes, rzl)
        try:
            getattr(layout, "label_lut", make_label_lut)(self.num_classes, bool(rzl))
        except ValueError as e:
            raise ClassSplitError(str(e)) from e

    # -- class split -------------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        return self.class_split.class_names

    @property
    def num_classes(self) -> int:
        return self.class_split.num_classes

    @property
    def seen(self) -> tuple[int, ...]:
        return self.class_split.seen

    @property
    def unseen(self) -> tuple[int, ...]:
        return self.class_split.unseen

    @property
    def ignore_index(self) -> int:
        return IGNORE_INDEX

    # -- text prompts (zegclip/data/prompts.py) ---------------------------------------------------
    @property
    def text_prompts(self) -> tuple[str, ...]:
        """The names the text side embeds (the class names unless configured)."""
        return self.text.prompts

    @property
    def prompt_to_class(self) -> tuple[int, ...]:
        """The label class each of :attr:`text_prompts` predicts."""
        return self.text.prompt_to_class

    @property
    def text_synonyms(self) -> str | None:
        return self.text.synonyms

    @property
    def vocabulary(self) -> dict[str, Any] | None:
        """Which list the prompts come from (name, file, source), or None."""
        return self.text.vocabulary

    # -- datasets ----------------------------------------------------------------------------
    def build_split(self, split: str, train: bool) -> Dataset:
        """Build the dataset of ``split`` with the train or test transform."""
        transform = (
            build_train_transform(**self.train_transform_kwargs)
            if train
            else build_test_transform(**self.test_transform_kwargs)
        )
        return self.layout(
            self.root,
            split,
            transform=transform,
            num_classes=self.num_classes,
            reduce_zero_label=self.reduce_zero_label,
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self.build_split("train", train=True)
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            val = self.build_split("val", train=False)
            if self.val_limit is not None and self.val_limit < len(val):  # type: ignore[arg-type]
                n, k = len(val), self.val_limit  # type: ignore[arg-type]
                val = Subset(val, [i * n // k for i in range(k)])
            self.val_dataset = val
        if stage in (None, "test", "predict") and self.test_dataset is None:
            self.test_dataset = self.build_split("test", train=False)

    def verify_eval_splits(self, splits: Sequence[str] = ("val",)) -> None:
        """Read every file of the evaluation ``splits`` now (cached), so that a bad file fails
        the run at start-up rather than at the first validation."""
        from zegclip.data.verify import verify_samples

        for split in splits:
            self.setup("validate" if split == "val" else "test")
            dataset = self.val_dataset if split == "val" else self.test_dataset
            assert dataset is not None
            verify_samples(dataset, f"{self.name} {split}", workers=max(1, self.num_workers))

    # -- loaders -----------------------------------------------------------------------------
    def _dist(self) -> tuple[int, int, int]:
        """(world_size, global_rank, current_epoch) of the attached trainer, or (1, 0, 0)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0, 0
        return int(trainer.world_size), int(trainer.global_rank), int(trainer.current_epoch)

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.num_workers
        return {
            "num_workers": workers,
            "pin_memory": self.pin_memory and torch.cuda.is_available(),
            "persistent_workers": self.persistent_workers and workers > 0,
            "collate_fn": collate_segmentation,
            "worker_init_fn": seed_worker,
        }

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return DataLoader(dataset, **self._loader_kwargs(), **kwargs)

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            self.setup("fit")
        assert self.train_dataset is not None
        world, rank, epoch = self._dist()
        sampler = TrainStream(len(self.train_dataset), num_replicas=world, rank=rank, seed=self.seed)  # type: ignore[arg-type]
        sampler.set_epoch(epoch)
        if len(sampler) < self.batch_size:
            raise ConfigError(
                f"{len(self.train_dataset)} training images give {len(sampler)} per rank "  # type: ignore[arg-type]
                f"over {world} rank(s): fewer than one batch of dataset.batch_size={self.batch_size}"
            )
        return ResumableDataLoader(
            SeededSamples(self.train_dataset),
            sampler=sampler,
            progress=self.stream_progress,
            batch_size=self.batch_size,
            drop_last=True,
            **self._loader_kwargs(),
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training and isinstance(batch, dict):
            self.stream_progress.consumed(batch.get("meta") or [])
        return batch

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        world, rank, _ = self._dist()
        if len(dataset) < world:  # type: ignore[arg-type]
            # a rank without a batch would skip the epoch-end metric sync and hang the others
            raise ConfigError(f"{len(dataset)} evaluation images cannot be split over {world} ranks")  # type: ignore[arg-type]
        sampler = ShardedEvalSampler(dataset, num_replicas=world, rank=rank)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, rank, 2))
        return self._loader(dataset, batch_size=self.eval_batch_size, sampler=sampler, generator=generator)

    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is None:
            self.setup("validate")
        assert self.val_dataset is not None
        return self._eval_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        if self.test_dataset is None:
            self.setup("test")
        assert self.test_dataset is not None
        return self._eval_loader(self.test_dataset)
