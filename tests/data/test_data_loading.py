"""Datamodule, batch format, collate, DDP eval sampler and per-worker augmentation streams."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from spec_classes import VOC_NAMES
from torch.utils.data import DataLoader, DistributedSampler

from zegclip.data import (
    IGNORE_INDEX,
    SegmentationDataModule,
    SegmentationDataset,
    ShardedEvalSampler,
    VOCDataset,
    build_train_transform,
    collate_segmentation,
    derive_seed,
    seed_worker,
)
from zegclip.data.loading import TrainStream

IMG = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
LAB = np.repeat(np.array([0, 1, 2, IGNORE_INDEX], dtype=np.uint16), 15)[None].repeat(40, 0)


def voc_dm(root, **kw) -> SegmentationDataModule:
    args = dict(
        layout=VOCDataset, root=root, class_names=VOC_NAMES, unseen=[15, 16, 17, 18, 19], num_workers=0
    )
    return SegmentationDataModule(**{**args, **kw})


def test_train_batch_format(synth, voc_root):
    dm = voc_dm(voc_root, batch_size=2)
    dm.setup("fit")
    assert len(dm.train_dataset) == len(synth.VOC_TRAIN) + len(synth.VOC_AUG)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "label", "meta"}
    assert batch["image"].dtype == torch.float32 and batch["image"].shape == (2, 3, 512, 512)
    assert batch["label"].dtype == torch.long and batch["label"].shape == (2, 512, 512)
    assert set(batch["label"].unique().tolist()) <= set(range(20)) | {IGNORE_INDEX}
    for m in batch["meta"]:
        assert {"name", "image_path", "label_path", "ori_size", "img_size"} <= set(m)
        assert m["ori_size"] == (40, 60) and m["image_path"].endswith(f"{m['name']}.jpg")
    assert len(dm.train_dataloader()) == 1  # 3 images, batch 2, drop_last


def test_val_batch_of_different_sizes(synth, voc_root):
    dm = voc_dm(voc_root, eval_batch_size=2)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    metas = batch["meta"]
    assert [m["name"] for m in metas] == list(synth.VOC_VAL)
    assert [m["ori_size"] for m in metas] == [(40, 60), (50, 30)]
    assert [m["img_size"] for m in metas] == [(512, 768), (853, 512)]  # short side exactly 512
    assert batch["image"].shape == (2, 3, 853, 768)
    assert batch["label"].shape == (2, 50, 60)  # labels at original resolution
    assert (batch["image"][0, :, 512:] == 0).all() and (batch["image"][1, :, :, 512:] == 0).all()
    assert (batch["label"][0, 40:] == IGNORE_INDEX).all() and (
        batch["label"][1, :, 30:] == IGNORE_INDEX
    ).all()
    assert batch["label"][1, 1:, :15].unique().tolist() == [0]  # raw 1 (aeroplane) -> 0
    assert batch["label"][1, 1:, 15:30].unique().tolist() == [14]  # raw 15 (person) -> 14
    dm2 = voc_dm(voc_root, val_limit=1)
    dm2.setup("validate")
    assert len(dm2.val_dataset) == 1
    dm2.setup("test")
    assert len(dm2.test_dataset) == 2


def test_collate_pads_to_largest():
    batch = [
        {"image": torch.ones(3, 4, 6), "label": torch.zeros(2, 3, dtype=torch.long), "meta": {"name": "a"}},
        {"image": torch.ones(3, 5, 2), "label": torch.ones(4, 1, dtype=torch.long), "meta": {"name": "b"}},
    ]
    out = collate_segmentation(batch)
    assert out["image"].shape == (2, 3, 5, 6) and out["label"].shape == (2, 4, 3)
    assert out["image"][0, :, 4:].eq(0).all() and out["image"][1, :, :, 2:].eq(0).all()
    assert out["image"][0, :, :4, :6].eq(1).all()
    assert out["label"][0, 2:].eq(IGNORE_INDEX).all() and out["label"][1, :, 1:].eq(IGNORE_INDEX).all()
    assert out["label"][1, :, :1].eq(1).all() and [m["name"] for m in out["meta"]] == ["a", "b"]


@pytest.mark.parametrize("n", [1, 5, 7, 10])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_eval_sampler_covers_every_index_once(n, world):
    data = list(range(n))
    shards = [list(ShardedEvalSampler(data, num_replicas=world, rank=r)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == data  # union = all, no repeats, no padding
    assert all(len(ShardedEvalSampler(data, world, r)) == len(s) for r, s in enumerate(shards))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert isinstance(ShardedEvalSampler(data, world, 0), DistributedSampler)


def test_ddp_samplers(synth, voc_root):
    dm = voc_dm(voc_root, batch_size=1)
    dm.setup()
    names = []
    for rank in range(2):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, current_epoch=0)
        train = dm.train_dataloader()
        assert type(train.sampler) is TrainStream
        assert train.sampler.num_replicas == 2 and train.sampler.rank == rank
        assert len(train.sampler) == 1  # 3 training images over 2 ranks: the odd one is dropped
        names += [m["name"] for b in train for m in b["meta"]]
        val = dm.val_dataloader()
        assert isinstance(val.sampler, ShardedEvalSampler)
        names += [m["name"] for b in val for m in b["meta"]]
    train_names = [n for n in names if n not in synth.VOC_VAL]
    assert len(train_names) == 2 and len(set(train_names)) == 2  # the ranks train on different images
    assert sorted(n for n in names if n in synth.VOC_VAL) == sorted(synth.VOC_VAL)
    dm.trainer = SimpleNamespace(world_size=3, global_rank=0, current_epoch=0)
    with pytest.raises(ValueError, match="2 evaluation images cannot be split over 3 ranks"):
        dm.val_dataloader()


class SameSample(SegmentationDataset):
    """n copies of one image: any difference between samples comes from augmentation."""

    def __init__(self, root, split, *, transform=None, num_classes=None, reduce_zero_label=None, n=4):
        super().__init__([], num_classes or 3, False, transform)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def load_sample(self, index: int) -> dict:
        meta = {"name": str(index), "image_path": "", "label_path": "", "ori_size": (40, 60)}
        return {"image": IMG, "label": LAB, "meta": meta}


def _epoch(loader) -> list[torch.Tensor]:
    return [b["image"][0] for b in loader]


def test_worker_streams_differ_and_reproduce():
    transform = build_train_transform(crop_size=32, scale=(64, 24))

    def loader(rank: int, init=seed_worker) -> DataLoader:
        ds = SameSample(None, "train", transform=transform)
        gen = torch.Generator().manual_seed(derive_seed(0, rank, 0, 0))
        return DataLoader(
            ds,
            batch_size=1,
            num_workers=2,
            collate_fn=collate_segmentation,
            worker_init_fn=init,
            generator=gen,
            multiprocessing_context="fork",
        )

    a = loader(0)
    e0, e1 = _epoch(a), _epoch(a)
    # samples 0 and 1 come from workers 0 and 1: their first draws differ
    assert not torch.equal(e0[0], e0[1])
    assert not torch.equal(e0[0], e1[0])  # another epoch, another stream
    again = _epoch(loader(0))
    assert all(torch.equal(x, y) for x, y in zip(e0, again))  # reproducible from the seed
    assert not torch.equal(_epoch(loader(1))[0], e0[0])  # another rank, another stream
    # the pitfall this guards against: without seeding both workers repeat the same stream
    plain = _epoch(loader(0, init=None))
    assert torch.equal(plain[0], plain[1])


def test_datamodule_streams_with_callable_layout():
    def make(seed: int, workers: int) -> SegmentationDataModule:
        return SegmentationDataModule(
            layout=SameSample,
            root=".",
            class_names=["a", "b", "c"],
            unseen=[2],
            crop_size=32,
            scale=(64, 24),
            batch_size=1,
            num_workers=workers,
            seed=seed,
            persistent_workers=False,
        )

    dm = make(0, 0)
    first = _epoch(dm.train_dataloader())
    assert not torch.equal(first[0], first[1])
    assert all(torch.equal(x, y) for x, y in zip(first, _epoch(make(0, 0).train_dataloader())))
    assert not torch.equal(first[0], _epoch(make(1, 0).train_dataloader())[0])
    w = _epoch(make(0, 2).train_dataloader())
    assert len(w) == 4 and not torch.equal(w[0], w[1])


class _Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.shapes: list[tuple] = []
        self.val_names: list[str] = []

    def training_step(self, batch, idx):
        self.shapes.append((tuple(batch["image"].shape), tuple(batch["label"].shape)))
        return (self.w * batch["image"].mean()).sum()

    def validation_step(self, batch, idx):
        self.val_names += [m["name"] for m in batch["meta"]]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_trainer_uses_the_datamodule(synth, voc_root):
    dm = voc_dm(voc_root, batch_size=1, crop_size=64, scale=(128, 32))
    model = _Recorder()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    assert len(model.shapes) == 2 * 3 and set(model.shapes) == {((1, 3, 64, 64), (1, 64, 64))}
    assert sorted(model.val_names) == sorted(list(synth.VOC_VAL) * 2)
    assert trainer.train_dataloader.sampler.epoch == 1  # Lightning called set_epoch
