"""DataLoader pieces: batch collation, per-worker augmentation seeding, the DDP eval sampler."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, get_worker_info

from zegclip.data.datasets import iter_base_datasets
from zegclip.data.splits import IGNORE_INDEX


def collate_segmentation(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into ``{"image": (B, 3, H, W) float, "label": (B, H, W) long, "meta": [dict]}``.

    Images of different sizes are padded bottom / right with 0 to the largest (h, w) of the batch
    and labels with 255 to the largest (H, W); each meta's ``img_size`` / ``ori_size`` give the
    valid regions.
    """
    if not batch:
        raise ValueError("empty batch")
    images = [b["image"] for b in batch]
    labels = [b["label"] for b in batch]
    h = max(int(im.shape[-2]) for im in images)
    w = max(int(im.shape[-1]) for im in images)
    image = images[0].new_zeros((len(images), images[0].shape[0], h, w))
    for i, im in enumerate(images):
        image[i, :, : im.shape[-2], : im.shape[-1]] = im
    lh = max(int(lb.shape[-2]) for lb in labels)
    lw = max(int(lb.shape[-1]) for lb in labels)
    label = torch.full((len(labels), lh, lw), IGNORE_INDEX, dtype=torch.long)
    for i, lb in enumerate(labels):
        label[i, : lb.shape[-2], : lb.shape[-1]] = lb
    return {"image": image, "label": label, "meta": [b["meta"] for b in batch]}


def derive_seed(*entropy: int) -> int:
    """A 32-bit seed mixing the given integers (seed, rank, worker, epoch, ...) via SeedSequence."""
    return int(np.random.SeedSequence([int(e) & 0xFFFFFFFFFFFFFFFF for e in entropy]).generate_state(1)[0])


def seed_dataset(dataset: Dataset, seed: int) -> None:
    """Seed the augmentation stream of ``dataset`` and of every dataset it wraps."""
    for ds in iter_base_datasets(dataset):
        fn = getattr(ds, "set_random_seed", None)
        if fn is not None:
            fn(seed)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: give every DataLoader worker its own augmentation stream.

    Uses the worker's torch seed (``base_seed + worker_id``; the DataLoader draws ``base_seed``
    from its ``generator`` each time it starts its workers, i.e. each epoch unless workers are
    persistent, in which case the stream simply continues). Give the DataLoader a generator
    seeded from (seed, rank, epoch) and the streams differ across workers, ranks and epochs and
    are reproducible from the seed. Also seeds ``random`` and ``numpy`` in the worker.
    """
    info = get_worker_info()
    if info is None:  # called in the main process: nothing to do
        return
    seed = derive_seed(info.seed, worker_id)
    random.seed(seed)
    np.random.seed(seed)
    seed_dataset(info.dataset, seed)


class ShardedEvalSampler(DistributedSampler):
    """Evaluation sampler for DDP: rank r gets the contiguous shard
    ``[r * n // W, (r + 1) * n // W)`` of the dataset, in order, without padding or repeats.

    Shards may differ in size by one; metrics that sum states across ranks (torchmetrics) stay
    exact. Subclassing ``DistributedSampler`` keeps Lightning from replacing it even with
    ``use_distributed_sampler=True``.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        n = len(dataset)  # type: ignore[arg-type]
        self.start = rank * n // num_replicas
        self.stop = (rank + 1) * n // num_replicas
        self.num_samples = self.stop - self.start
        self.total_size = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.num_samples
