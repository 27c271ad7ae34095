"""DataLoader pieces: batch collation, augmentation seeding, the resumable training stream, the
DDP eval sampler."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, get_worker_info

from zegclip.common.constants import IGNORE_INDEX
from zegclip.data.datasets import iter_base_datasets


def collate_segmentation(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into ``{"image": (B, 3, H, W) float, "label": (B, H, W) long, "meta": [dict]}``.

    Images of different sizes are padded bottom / right with 0 to the largest (h, w) of the batch
    and labels with ``IGNORE_INDEX`` to the largest (H, W); each meta's ``img_size`` / ``ori_size`` give the
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


# -- the resumable training stream -----------------------------------------------------------------


class TrainStream(Sampler[tuple[int, int, int, int]]):
    """Training sampler whose whole output is a pure function of ``(seed, epoch, position)``.

    Per epoch it shuffles the dataset with ``seed + epoch`` (as ``DistributedSampler``), drops the
    tail that does not divide over the ranks, and gives rank ``r`` every ``world``-th index starting
    at ``r``. It yields ``(index, sample_seed, epoch, position)``: ``position`` counts this rank's
    samples in the epoch and ``sample_seed`` (from seed, epoch and the global position) seeds that
    sample's augmentation, so the stream does not depend on the number of loader workers and can be
    restarted at any position with :meth:`resume_at` (a checkpoint taken mid-epoch resumes exactly).

    Args:
        length: dataset size; num_replicas / rank: DDP world size and this rank; seed: base seed.
    """

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.length = int(length)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, position: int) -> None:
        """Start the next pass over ``epoch`` at ``position`` (samples already consumed by this rank)."""
        self._resume = (int(epoch), int(position))

    def __len__(self) -> int:
        return self.length // self.num_replicas

    def __iter__(self) -> Iterator[tuple[int, int, int, int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.length, generator=generator)[: len(self) * self.num_replicas]
        mine = order[self.rank :: self.num_replicas].tolist()
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]
        self._resume = None
        for position in range(start, len(mine)):
            global_position = position * self.num_replicas + self.rank
            yield mine[position], derive_seed(self.seed, self.epoch, global_position), self.epoch, position


class SeededSamples(Dataset):
    """Wraps a dataset so that items are addressed by :class:`TrainStream` tuples.

    ``dataset[(index, sample_seed, epoch, position)]`` seeds the augmentation with ``sample_seed``,
    reads item ``index`` and records ``epoch`` / ``position`` in its meta (``stream``).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int, int, int]) -> dict[str, Any]:
        index, sample_seed, epoch, position = item
        seed_dataset(self.dataset, sample_seed)
        sample = self.dataset[index]
        sample["meta"] = dict(sample["meta"], stream=(epoch, position))
        return sample


class StreamProgress:
    """Where the training loop is in the stream: the epoch and this rank's next position.

    Updated from the ``stream`` meta of every batch the training loop consumes (not the ones the
    loader prefetched), so a checkpoint records exactly what was trained on.
    """

    def __init__(self) -> None:
        self.epoch = 0
        self.position = 0

    def consumed(self, metas: Sequence[dict[str, Any]]) -> None:
        streams = [m["stream"] for m in metas if "stream" in m]
        if streams:
            self.epoch = max(e for e, _ in streams)
            self.position = max(p for e, p in streams if e == self.epoch) + 1

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}


class ResumableDataLoader(DataLoader):
    """A training DataLoader over :class:`SeededSamples` / :class:`TrainStream` with Lightning's
    stateful-loader interface: its state is saved in every checkpoint and restored on resume."""

    def __init__(
        self, dataset: SeededSamples, sampler: TrainStream, progress: StreamProgress, **kwargs: Any
    ) -> None:
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        return self.progress.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.progress.epoch, self.progress.position = int(state["epoch"]), int(state["position"])
        self.sampler.resume_at(self.progress.epoch, self.progress.position)  # type: ignore[attr-defined]
