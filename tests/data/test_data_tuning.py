"""The tuning split (tuning=pseudo_unseen): pseudo-unseen classes drawn from the seen ones, held-out
training images, true unseen classes dropped, and never a read of the val / test split."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from zegclip.common.constants import IGNORE_INDEX as IGNORE
from zegclip.data import ClassSplitError, COCOStuffDataset, EmptySplitError, VOCDataset, build_class_split
from zegclip.data.classes import class_names, unseen_classes
from zegclip.data.shapes import build_shapes_dataset
from zegclip.data.tuning import (
    PseudoUnseenDataModule,
    build_tuning_split,
    default_pseudo_unseen_count,
    holdout_indices,
)

VOC_UNSEEN = [15, 16, 17, 18, 19]


def voc_split():
    return build_class_split(class_names("voc"), VOC_UNSEEN)


def test_pseudo_unseen_are_a_seeded_share_of_the_seen_classes() -> None:
    split = voc_split()
    tuning = build_tuning_split(split, seed=0)
    assert len(tuning.pseudo_unseen) == 4 == default_pseudo_unseen_count(split)  # round(15 * 5 / 20)
    assert set(tuning.pseudo_unseen) <= set(split.seen)
    assert build_tuning_split(split, seed=0) == tuning  # deterministic
    assert any(build_tuning_split(split, seed=s).pseudo_unseen != tuning.pseudo_unseen for s in range(1, 5))
    # the tuning vocabulary: the seen classes only, renumbered in order; pseudo-unseen play the unseen part
    cs = tuning.class_split
    assert cs.class_names == tuple(split.class_names[i] for i in split.seen) and not set(
        cs.class_names
    ) & set(split.unseen_names)
    assert sorted(cs.unseen_names) == sorted(split.class_names[i] for i in tuning.pseudo_unseen)
    lut = tuning.label_lut()
    assert lut[torch.tensor(VOC_UNSEEN + [IGNORE])].tolist() == [IGNORE] * 6  # unseen pixels -> ignore
    assert lut[torch.tensor(list(split.seen))].tolist() == list(range(15))


@pytest.mark.parametrize(
    ("dataset", "unseen", "expected"), [("coco", None, 14), ("context", None, 8), ("shapes", None, 3)]
)
def test_pseudo_unseen_count_follows_the_unseen_share(dataset: str, unseen, expected: int) -> None:
    from omegaconf import OmegaConf

    if dataset == "shapes":
        split = build_class_split(class_names("shapes"), unseen_classes("shapes"))
    else:
        conf = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "dataset" / f"{dataset}.yaml")
        split = build_class_split(class_names(dataset), list(conf.dataset.unseen))
    assert default_pseudo_unseen_count(split) == expected


def test_pseudo_unseen_bad_input_is_refused() -> None:
    split = voc_split()
    with pytest.raises(ClassSplitError, match="not seen classes"):
        build_tuning_split(split, pseudo_unseen=[3, 16])  # 16 (sheep) is unseen
    with pytest.raises(ClassSplitError, match="distinct seen classes"):
        build_tuning_split(split, pseudo_unseen=list(split.seen))
    with pytest.raises(ClassSplitError, match="pseudo_unseen_count"):
        build_tuning_split(split, count=15)
    with pytest.raises(ClassSplitError, match="dataset.unseen is empty"):
        build_tuning_split(build_class_split(class_names("voc"), []))
    assert build_tuning_split(split, pseudo_unseen=[7, 3]).pseudo_unseen == (3, 7)


def test_holdout_is_a_deterministic_disjoint_share() -> None:
    train, held = holdout_indices(1000, 0.1, seed=0)
    assert len(held) == 100 and len(train) == 900
    assert sorted(train + held) == list(range(1000))
    assert holdout_indices(1000, 0.1, seed=0) == (train, held)
    assert holdout_indices(1000, 0.1, seed=1)[1] != held
    assert len(holdout_indices(1000, 0.1, max_images=30)[1]) == 30
    assert len(holdout_indices(3, 0.1)[1]) == 1  # at least one image
    with pytest.raises(EmptySplitError, match="leaves none to train on"):
        holdout_indices(1, 0.5)
    with pytest.raises(ValueError, match="holdout_fraction"):
        holdout_indices(10, 1.0)


class RecordingLayout:
    """A layout that records which splits the datamodule builds."""

    def __init__(self, layout) -> None:
        self.layout = layout
        self.splits: list[str] = []
        self.func = getattr(layout, "func", layout)  # what the datamodule inspects (NUM_CLASSES, ...)

    def __call__(self, root, split, **kwargs):
        self.splits.append(split)
        return self.layout(root, split, **kwargs)


def shapes_module(layout, **kwargs) -> PseudoUnseenDataModule:
    return PseudoUnseenDataModule(
        layout,
        class_names=class_names("shapes"),
        unseen=unseen_classes("shapes"),
        crop_size=64,
        scale=(64, 64),
        ratio_range=(1.0, 1.0),
        cat_max_ratio=1.0,
        photometric=False,
        test_short_side=64,
        batch_size=8,
        eval_batch_size=16,
        num_workers=0,
        pin_memory=False,
        persistent_workers=False,
        **kwargs,
    )


def test_shapes_tuning_split_never_builds_val_or_test_and_drops_unseen() -> None:
    # val_size=test_size=0: reading any image of those splits would fail
    layout = RecordingLayout(partial(build_shapes_dataset, train_size=80, val_size=0, test_size=0))
    dm = shapes_module(layout, holdout_fraction=0.25)
    source = build_class_split(class_names("shapes"), unseen_classes("shapes"))
    assert dm.class_names == tuple(
        source.class_names[i] for i in source.seen
    )  # 12 classes; the 4 unseen are gone
    assert len(dm.unseen) == 3 and set(dm.seen) | set(dm.unseen) == set(range(12))
    assert dm.evaluation_name == "tune"
    dm.setup()
    assert set(layout.splits) == {"train"}
    assert len(dm.train_dataset) == 60 and len(dm.val_dataset) == 20 and len(dm.test_dataset) == 20
    with pytest.raises(RuntimeError, match="only the training split"):
        dm.build_split("test", train=False)
    held = {m["name"] for b in dm.test_dataloader() for m in b["meta"]}
    trained = {m["name"] for b in dm.train_dataloader() for m in b["meta"]}
    assert len(held) == 20 and not held & trained  # held-out images are never trained on
    # labels: tuning ids or ignore; every pixel of a true unseen class became ignore,
    # the others were renumbered
    raw = build_shapes_dataset(None, "train", train_size=80, val_size=0, test_size=0)
    lut = np.full(IGNORE + 1, IGNORE)
    lut[list(source.seen)] = np.arange(12)
    for batch in dm.test_dataloader():
        for label, meta in zip(batch["label"], batch["meta"]):
            index = int(meta["name"].rsplit("_", 1)[1])
            expected = lut[raw.load_sample(index)["label"]]
            assert torch.equal(label, torch.from_numpy(expected).long())
    values = torch.cat([b["label"].flatten() for b in dm.train_dataloader()]).unique().tolist()
    assert set(values) <= set(range(12)) | {IGNORE} and len(values) > 3


def test_voc_tuning_split_works_without_the_test_split_files(voc_root: Path) -> None:
    base = voc_root / "VOCdevkit" / "VOC2012"
    for name in ("2007_000039", "2007_000042"):  # the val (= test) images and labels
        (base / "JPEGImages" / f"{name}.jpg").unlink()
        (base / "SegmentationClass" / f"{name}.png").unlink()
    with pytest.raises(FileNotFoundError):
        VOCDataset(voc_root, "val")  # the benchmark's test split is gone
    layout = RecordingLayout(VOCDataset)
    dm = PseudoUnseenDataModule(
        layout,
        root=voc_root,
        class_names=class_names("voc"),
        unseen=VOC_UNSEEN,
        pseudo_unseen=[4, 5],
        crop_size=64,
        scale=(128, 64),
        batch_size=1,
        num_workers=0,
        persistent_workers=False,
        pin_memory=False,
        test_short_side=64,
    )
    dm.verify_eval_splits(("val",))
    dm.setup()
    assert set(layout.splits) == {"train"}
    assert len(dm.train_dataset) + len(dm.test_dataset) == 3  # train + aug, one held out
    labels = [dm.test_dataset[i]["label"] for i in range(len(dm.test_dataset))]
    labels += [dm.train_dataset[i]["label"] for i in range(len(dm.train_dataset))]
    values = set(torch.cat([lb.flatten() for lb in labels]).tolist())
    # raw VOC 16 (pottedplant) and 20 (tvmonitor) are unseen: ignored;
    # 1, 2, 3, 5, 6, 7 -> ids 0, 1, 2, 4, 5, 6
    assert values <= {0, 1, 2, 4, 5, 6, IGNORE} and IGNORE in values
    assert dm.unseen == (4, 5) and [dm.class_names[i] for i in dm.unseen] == ["bottle", "bus"]


def test_coco_tuning_split_works_without_val2017(coco_root: Path) -> None:
    shutil.rmtree(coco_root / "coco_stuff164k" / "images" / "val2017")
    shutil.rmtree(coco_root / "coco_stuff164k" / "annotations" / "val2017")
    conf_unseen = [19, 23, 28, 29, 36, 51, 76, 88, 94, 112, 133, 136, 137, 157, 160]
    dm = PseudoUnseenDataModule(
        COCOStuffDataset,
        root=coco_root,
        class_names=class_names("coco"),
        unseen=conf_unseen,
        crop_size=32,
        scale=(64, 32),
        batch_size=1,
        num_workers=0,
        persistent_workers=False,
        pin_memory=False,
        test_short_side=32,
    )
    dm.setup()
    assert len(dm.class_names) == 156 and len(dm.unseen) == 14
    for ds in (dm.train_dataset, dm.test_dataset):
        for i in range(len(ds)):
            values = set(ds[i]["label"].unique().tolist())
            assert values <= set(range(156)) | {IGNORE}
    # synthetic train image 000000000009 holds raw 0, 19 (cow: unseen), 170 (wood): 19 must be ignored
    sample = next(
        ds[i]
        for ds in (dm.train_dataset, dm.test_dataset)
        for i in range(len(ds))
        if ds[i]["meta"]["name"] == "000000000009"
    )
    source_ids = [c for c in range(171) if c not in conf_unseen]
    assert set(sample["label"].unique().tolist()) == {source_ids.index(0), source_ids.index(170), IGNORE}
