"""The procedural shapes world: determinism, labels, vocabularies, dataset format, VOC writer."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from shapes_layouts import ShapesDataset, write_voc_layout

from zegclip.common.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from zegclip.data.shapes import (
    ALL_COLOUR_SHAPES,
    COLOURS,
    COMPOSITIONAL,
    SHAPES,
    SHAPES_ONLY,
    ShapesWorld,
    get_vocabulary,
)


@pytest.mark.parametrize("vocabulary", ["compositional", "shapes", "all"])
def test_same_seed_and_index_give_identical_samples(vocabulary):
    a, b = ShapesWorld(vocabulary, seed=7), ShapesWorld(vocabulary, seed=7)
    for index in (0, 1, 12345):
        img_a, lbl_a = a.sample(index)
        img_b, lbl_b = b.sample(index)
        assert np.array_equal(img_a, img_b)
        assert np.array_equal(lbl_a, lbl_b)
    # Order of access does not matter (no hidden state).
    later = a.sample(3)[0]
    assert np.array_equal(ShapesWorld(vocabulary, seed=7).sample(3)[0], later)


def test_different_seeds_and_indices_differ():
    w0, w1 = ShapesWorld(seed=0), ShapesWorld(seed=1)
    assert not np.array_equal(w0.sample(0)[0], w1.sample(0)[0])
    assert not np.array_equal(w0.sample(0)[0], w0.sample(1)[0])
    layouts0 = [[o.description for o in w0.objects(i)] for i in range(20)]
    layouts1 = [[o.description for o in w1.objects(i)] for i in range(20)]
    assert layouts0 != layouts1


@pytest.mark.parametrize("vocabulary", ["compositional", "shapes"])
def test_labels_are_class_ids_or_ignore_and_match_objects(vocabulary):
    world = ShapesWorld(vocabulary, seed=3)
    n = world.vocabulary.num_classes
    for index in range(40):
        scene = world.render(index)
        assert scene.image.dtype == np.uint8 and scene.image.shape == (64, 64, 3)
        assert scene.label.dtype == np.uint16 and scene.label.shape == (64, 64)
        values = set(np.unique(scene.label).tolist())
        assert values <= set(range(n)) | {IGNORE_INDEX}
        assert IGNORE_INDEX in values  # there is always background
        assert 1 <= len(scene.objects) <= 3
        # The last object is drawn on top: it is always visible with its own class id.
        last = scene.objects[-1]
        assert last.class_id in values
        assert values - {IGNORE_INDEX} <= {o.class_id for o in scene.objects}
        # Objects have the size the study used (radius 8.5-14 px at 64x64).
        assert all(8.5 <= o.radius <= 14.0 for o in scene.objects)
        assert scene.objects == world.objects(index)


def test_object_pixels_have_their_colour():
    world = ShapesWorld("all", seed=5, max_objects=1)
    names = list(COLOURS)
    bases = np.array([COLOURS[c] for c in names], dtype=np.float64)
    for index in range(30):
        scene = world.render(index)
        obj = scene.objects[0]
        assert ALL_COLOUR_SHAPES.classes[obj.class_id].colour == obj.colour
        mean = scene.image[scene.label == obj.class_id].astype(np.float64).mean(0)
        # Compare chromaticity (shade varies brightness).
        nearest = np.argmin(np.linalg.norm(bases / bases.sum(1, keepdims=True) - mean / mean.sum(), axis=1))
        assert names[nearest] == obj.colour


def test_every_shape_is_drawn_with_a_plausible_area():
    world = ShapesWorld("shapes", seed=11, max_objects=1)
    areas: dict[str, list[float]] = {s: [] for s in SHAPES}
    for index in range(400):
        scene = world.render(index)
        obj = scene.objects[0]
        areas[obj.shape].append((scene.label != IGNORE_INDEX).sum() / obj.radius**2)
    for shape, values in areas.items():
        assert values, f"no {shape} in 400 samples"
        # Between a thin ring / crescent and a full square, relative to radius^2.
        assert 0.8 < np.median(values) < 4.0, (shape, np.median(values))


def test_object_count_and_image_size_are_configurable():
    single = ShapesWorld("compositional", seed=0, max_objects=1)
    assert all(len(single.objects(i)) == 1 for i in range(30))
    crowded = ShapesWorld("compositional", seed=0, min_objects=3, max_objects=3)
    assert np.mean([len(crowded.objects(i)) for i in range(30)]) > 2.5
    big = ShapesWorld("compositional", image_size=96, seed=0)
    image, label = big.sample(0)
    assert image.shape == (96, 96, 3) and label.shape == (96, 96)
    assert all(8.5 * 1.5 <= o.radius <= 14.0 * 1.5 for o in big.objects(0))
    with pytest.raises(ValueError):
        ShapesWorld("compositional", min_objects=2, max_objects=1)


def test_compositional_split_property():
    vocab = get_vocabulary("compositional")
    assert vocab is COMPOSITIONAL
    assert vocab.num_classes == 16 and len(vocab.unseen) == 4
    assert sorted(vocab.seen + list(vocab.unseen)) == list(range(16))
    unseen_names = {vocab.class_names[i] for i in vocab.unseen}
    assert unseen_names == {"red circle", "green square", "blue triangle", "yellow star"}
    seen = [vocab.classes[i] for i in vocab.seen]
    for i in vocab.unseen:
        cls = vocab.classes[i]
        assert any(s.colour == cls.colour for s in seen), cls
        assert any(s.shape == cls.shape for s in seen), cls
    # A Latin square: every colour and every shape is unseen exactly once.
    assert len({vocab.classes[i].colour for i in vocab.unseen}) == 4
    assert len({vocab.classes[i].shape for i in vocab.unseen}) == 4


def test_shape_names_vocabulary():
    vocab = get_vocabulary("shapes")
    assert vocab is SHAPES_ONLY
    assert vocab.class_names == list(SHAPES)
    assert [vocab.class_names[i] for i in vocab.unseen] == ["star", "ring"]
    assert all(" " not in n for n in vocab.class_names)
    with pytest.raises(ValueError, match="Unknown shapes vocabulary"):
        get_vocabulary("animals")


def test_dataset_item_format_and_normalisation():
    ds = ShapesDataset(length=5, vocabulary="compositional", seed=2, start=10)
    assert len(ds) == 5 and ds.class_names == COMPOSITIONAL.class_names
    item = ds[1]
    assert set(item) == {"image", "label", "meta"}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 64, 64)
    assert item["label"].dtype == torch.long and item["label"].shape == (64, 64)
    meta = item["meta"]
    assert meta["image_path"] is None and meta["ori_size"] == (64, 64) and meta["img_size"] == (64, 64)
    assert meta["name"] == "shapes_compositional_s2_000011"
    image, label = ds.world.sample(11)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    restored = (item["image"] * std + mean).round().permute(1, 2, 0).numpy()
    assert np.array_equal(restored, image.astype(np.float32))
    assert torch.equal(item["label"], torch.from_numpy(label).long())
    with pytest.raises(IndexError):
        ds[5]


def test_dataset_flip_is_deterministic_and_changes_with_epoch():
    plain = ShapesDataset(length=16, seed=4)
    flip = ShapesDataset(length=16, seed=4, flip=True)
    flipped = [not torch.equal(flip[i]["label"], plain[i]["label"]) for i in range(16)]
    assert 0 < sum(flipped) < 16
    for i in range(16):
        if flipped[i]:
            assert torch.equal(flip[i]["label"], plain[i]["label"].flip(-1))
            assert torch.equal(flip[i]["image"], plain[i]["image"].flip(-1))
    again = ShapesDataset(length=16, seed=4, flip=True)
    assert all(torch.equal(again[i]["image"], flip[i]["image"]) for i in range(16))
    flip.set_epoch(1)
    flipped_1 = [not torch.equal(flip[i]["label"], plain[i]["label"]) for i in range(16)]
    assert flipped_1 != flipped


@pytest.mark.parametrize("image_format", ["png", "jpg"])
def test_voc_layout_writer(tmp_path, image_format):
    world = ShapesWorld("shapes", seed=9)
    base = write_voc_layout(world, tmp_path, n_train=4, n_val=3, image_format=image_format)
    assert base == tmp_path / "VOCdevkit" / "VOC2012"
    train = (base / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    val = (base / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert len(train) == 4 and len(val) == 3 and not set(train) & set(val)
    assert sorted(p.stem for p in (base / "JPEGImages").iterdir()) == sorted(train + val)
    assert sorted(p.stem for p in (base / "SegmentationClass").iterdir()) == sorted(train + val)
    info = json.loads((base / "shapes_world.json").read_text())
    assert info["class_names"] == SHAPES_ONLY.class_names and info["unseen"] == list(SHAPES_ONLY.unseen)
    for index, name in enumerate(train + val):
        image, label = world.sample(index)
        stored = cv2.imread(str(base / "SegmentationClass" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert stored.dtype == np.uint8 and stored.ndim == 2
        decoded = np.where(stored == 0, IGNORE_INDEX, stored.astype(np.int32) - 1)
        assert np.array_equal(decoded, label)
        rgb = cv2.imread(str(base / "JPEGImages" / f"{name}.{image_format}"))[..., ::-1]
        diff = np.abs(rgb.astype(np.int32) - image.astype(np.int32))
        if image_format == "png":
            assert diff.max() == 0
        else:
            assert diff.mean() < 5


def test_datamodule_layout_splits_and_transforms():
    from zegclip.data import build_test_transform, collate_segmentation
    from zegclip.data.errors import ClassSplitError
    from zegclip.data.shapes import ShapesSegmentationDataset, build_shapes_dataset

    kwargs = {"vocabulary": "compositional", "world_seed": 3, "train_size": 30, "val_size": 5, "test_size": 7}
    splits = {
        s: build_shapes_dataset("/unused", s, num_classes=16, **kwargs) for s in ("train", "val", "test")
    }
    assert [len(splits[s]) for s in ("train", "val", "test")] == [30, 5, 7]
    names = [splits[s][i]["meta"]["name"] for s in splits for i in range(len(splits[s]))]
    assert len(set(names)) == 42  # disjoint index ranges of one world
    raw = splits["val"][2]  # no transform: numpy arrays, as the real layouts
    image, label = ShapesWorld("compositional", seed=3).sample(32)
    assert np.array_equal(raw["image"], image) and np.array_equal(raw["label"], label)
    # With the real test transform and collate: the same tensors as ShapesDataset.
    test = build_shapes_dataset("/unused", "test", transform=build_test_transform(short_side=64), **kwargs)
    batch = collate_segmentation([test[0], test[1]])
    assert batch["image"].shape == (2, 3, 64, 64) and batch["label"].dtype == torch.long
    reference = ShapesDataset(length=37, seed=3)[35]
    assert torch.allclose(batch["image"][0], reference["image"], atol=1e-4)
    assert torch.equal(batch["label"][0], reference["label"])
    with pytest.raises(ClassSplitError):
        ShapesSegmentationDataset(None, "train", num_classes=20, **kwargs)
    with pytest.raises(ClassSplitError):
        ShapesSegmentationDataset(None, "train", reduce_zero_label=True, **kwargs)
    with pytest.raises(IndexError):
        splits["test"][7]
