"""Tiny synthetic datasets in the real on-disk layouts, built in temporary folders."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zegclip.common.constants import IGNORE_INDEX

_THIS_MODULE = sys.modules[__name__]  # taken now: other folders' conftest.py reuse the name later
H, W = 40, 60


def stripes(values: Sequence[int], h: int = H, w: int = W, ignore_row: bool = False) -> np.ndarray:
    """A label map made of vertical stripes of ``values`` (optionally a 255 first row)."""
    lab = np.zeros((h, w), dtype=np.uint8)
    bounds = np.linspace(0, w, len(values) + 1).astype(int)
    for v, a, b in zip(values, bounds[:-1], bounds[1:]):
        lab[:, a:b] = v
    if ignore_row:
        lab[0] = 255
    return lab


def as_ids(label: np.ndarray) -> np.ndarray:
    """A decoded-label expectation written with 255 for ignore, as the datasets emit it (uint16,
    ``IGNORE_INDEX`` = ignore)."""
    out = np.asarray(label).astype(np.uint16)
    out[np.asarray(label) == 255] = IGNORE_INDEX
    return out


def write_image(path: Path, h: int = H, w: int = W, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=95)


def write_label(path: Path, label: np.ndarray, palette: bool = False) -> None:
    """Save ids as a grayscale PNG, or as a palette PNG like VOC's SegmentationClass."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(label)
    if palette:
        im = Image.frombytes("P", (label.shape[1], label.shape[0]), label.tobytes())
        im.putpalette([c for i in range(256) for c in (i, (7 * i) % 256, (13 * i) % 256)])
    im.save(path)


def write_list(path: Path, ids: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


# VOC raw labels: 0 background, 1..20 classes, 255 border
VOC_TRAIN = {"2007_000032": [0, 1, 16], "2007_000033": [2, 3, 20]}
VOC_AUG = {"2008_000001": [0, 5, 6, 7]}
VOC_VAL = {"2007_000039": ([16, 0, 20], (H, W)), "2007_000042": ([1, 15], (50, 30))}


def make_voc(root: Path) -> Path:
    base = root / "VOCdevkit" / "VOC2012"
    sets = base / "ImageSets" / "Segmentation"
    for k, (i, vals) in enumerate(VOC_TRAIN.items()):
        write_image(base / "JPEGImages" / f"{i}.jpg", seed=k)
        write_label(base / "SegmentationClass" / f"{i}.png", stripes(vals, ignore_row=True), palette=True)
    for k, (i, vals) in enumerate(VOC_AUG.items()):
        write_image(base / "JPEGImages" / f"{i}.jpg", seed=10 + k)
        write_label(base / "SegmentationClassAug" / f"{i}.png", stripes(vals))
    for k, (i, (vals, (h, w))) in enumerate(VOC_VAL.items()):
        write_image(base / "JPEGImages" / f"{i}.jpg", h, w, seed=20 + k)
        write_label(
            base / "SegmentationClass" / f"{i}.png", stripes(vals, h, w, ignore_row=True), palette=True
        )
    write_list(sets / "train.txt", list(VOC_TRAIN))
    write_list(sets / "aug.txt", list(VOC_AUG))
    write_list(sets / "val.txt", list(VOC_VAL))
    return root


COCO = {
    "train2017": {"000000000009": [0, 19, 170], "000000000025": [23, 255, 5]},
    "val2017": {"000000000139": [28, 29, 36], "000000000285": [160, 1]},
}


def make_coco(root: Path) -> Path:
    base = root / "coco_stuff164k"
    for split, items in COCO.items():
        for k, (i, vals) in enumerate(items.items()):
            write_image(base / "images" / split / f"{i}.jpg", seed=k)
            write_label(base / "annotations" / split / f"{i}_labelTrainIds.png", stripes(vals))
    return root


CONTEXT = {
    "train": {"2008_000002": [0, 1, 59], "2008_000003": [2, 3, 38]},
    "val": {"2008_000007": [0, 10, 20]},
}


def make_context(root: Path) -> Path:
    base = root / "VOCdevkit" / "VOC2010"
    for split, items in CONTEXT.items():
        for k, (i, vals) in enumerate(items.items()):
            write_image(base / "JPEGImages" / f"{i}.jpg", seed=k)
            write_label(base / "SegmentationClassContext" / f"{i}.png", stripes(vals))
        write_list(base / "ImageSets" / "SegmentationContext" / f"{split}.txt", list(items))
    return root


def make_custom(root: Path) -> Path:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("# my classes\ncat\ndog\n\nbird\n")
    for split, stems in {"train": ["a", "b"], "val": ["c"]}.items():
        for k, s in enumerate(stems):
            write_image(root / "images" / split / f"{s}.jpg", seed=k)
            write_label(root / "labels" / split / f"{s}.png", stripes([0, 1, 2, 255]))
    return root


# -- the open-vocabulary benchmarks ------------------------------------------------------------------
def stripes16(values: Sequence[int], h: int = H, w: int = W) -> np.ndarray:
    """``stripes`` as uint16 (ids above 255)."""
    lab = np.zeros((h, w), dtype=np.uint16)
    bounds = np.linspace(0, w, len(values) + 1).astype(int)
    for v, a, b in zip(values, bounds[:-1], bounds[1:]):
        lab[:, a:b] = v
    return lab


# ADEChallengeData2016: raw 0 unlabelled, 1..150
ADE150 = {
    "training": {"ADE_train_00000001": [0, 1, 150], "ADE_train_00000002": [12, 13, 0]},
    "validation": {"ADE_val_00000001": [0, 3, 150, 8], "ADE_val_00000002": [5, 6]},
}


def make_ade150(root: Path) -> Path:
    base = root / "ADEChallengeData2016"
    for split, items in ADE150.items():
        for k, (i, vals) in enumerate(items.items()):
            write_image(base / "images" / split / f"{i}.jpg", seed=40 + k)
            write_label(base / "annotations" / split / f"{i}.png", stripes(vals))
    return root


# ADE20K full (ADE20K_2021_17_01): object ids of _seg.png (R/10*256 + G). The A-847 classes of some
# ids (vocabularies/ade847.json): wall 2978 -> 0, building 312 -> 1, gear shift 1089 -> 844,
# adding machine 3148 -> 846; 5 and 0 are not A-847 classes (-> ignore).
ADE_FULL_VAL = {
    # name: (scene folder, object ids in stripes, (h, w))
    "ADE_val_00000001": ("cultural/apse__indoor", [2978, 312, 5, 1089], (H, W)),
    "ADE_val_00000002": ("urban/street", [0, 3148, 2978], (600, 520)),  # short side 520 > 512: resized
}
ADE_FULL_TRAIN = {"ADE_train_00000001": ("urban/street", [312, 2978], (H, W))}
ADE_FULL_OBJECTS = 3160  # objectnames entries (the real index has 3,688)


def ade_seg_png(ids: np.ndarray) -> np.ndarray:
    """An ADE ``*_seg.png`` (RGB) whose class is R/10*256 + G; B holds an instance number."""
    seg = np.zeros((*ids.shape, 3), dtype=np.uint8)
    seg[..., 0] = (ids // 256) * 10
    seg[..., 1] = ids % 256
    seg[..., 2] = (ids % 7).astype(np.uint8)
    return seg


def make_ade_full(src: Path, objectnames: Sequence[str] | None = None) -> Path:
    """The ADE20K full release layout under ``src``: ``ADE20K_2021_17_01/index_ade20k.pkl`` and
    ``images/ADE/{validation,training}/<scene>/<name>.jpg`` + ``<name>_seg.png`` (+ the release's
    ``<name>.json``, unused)."""
    import json
    import pickle

    from zegclip.data.vocabularies import load_vocabulary

    base = src / "ADE20K_2021_17_01"
    vocab = load_vocabulary("ade847")
    if objectnames is None:
        names = [f"object {k}" for k in range(1, ADE_FULL_OBJECTS + 1)]
        for obj_id, name in zip(vocab.extra["ade20k_full_ids"], vocab.classes):
            names[obj_id - 1] = name  # mask value k is objectnames[k - 1]
        objectnames = names
    folders, files, scenes = [], [], []
    for split, items in (("validation", ADE_FULL_VAL), ("training", ADE_FULL_TRAIN)):
        for k, (name, (scene, ids, (h, w))) in enumerate(items.items()):
            folder = f"ADE20K_2021_17_01/images/ADE/{split}/{scene}"
            write_image(src / folder / f"{name}.jpg", h, w, seed=60 + k)
            seg = ade_seg_png(stripes16(ids, h, w).astype(np.int64))
            Image.fromarray(seg).save(src / folder / f"{name}_seg.png")
            (src / folder / f"{name}.json").write_text(
                json.dumps({"annotation": {"filename": f"{name}.jpg"}})
            )
            folders.append(folder)
            files.append(f"{name}.jpg")
            scenes.append(scene.split("/")[-1])
    n = len(files)
    index = {
        "filename": files,
        "folder": folders,
        "scene": scenes,
        "objectnames": list(objectnames),
        "objectPresence": np.zeros((len(objectnames), n), dtype=np.uint16),
        "objectIsPart": np.zeros((len(objectnames), n), dtype=np.uint16),
        "objectcounts": np.zeros(len(objectnames), dtype=np.int64),
        "description": {"filename": "array of length N with the image file names"},
    }
    with (base / "index_ade20k.pkl").open("wb") as f:
        pickle.dump(index, f)
    return src


# PASCAL Context 459 release: trainval/<id>.mat LabelMap (uint16, 0 unlabelled, 1..459)
CONTEXT459 = {"2008_000007": [0, 2, 300, 459], "2008_000009": [18, 431], "2008_000002": [1, 2]}
CONTEXT459_VAL = ["2008_000007", "2008_000009"]


def make_context459_release(src: Path, dst: Path) -> tuple[Path, Path]:
    from scipy.io import savemat

    from zegclip.data.vocabularies import load_vocabulary

    base = dst / "VOCdevkit" / "VOC2010"
    (src / "trainval").mkdir(parents=True, exist_ok=True)
    for k, (i, vals) in enumerate(CONTEXT459.items()):
        savemat(src / "trainval" / f"{i}.mat", {"LabelMap": stripes16(vals)})
        write_image(base / "JPEGImages" / f"{i}.jpg", seed=80 + k)
    write_list(base / "ImageSets" / "Main" / "val.txt", CONTEXT459_VAL)
    write_list(base / "ImageSets" / "Main" / "train.txt", ["2008_000002"])
    names = load_vocabulary("pc459").classes
    (src / "labels.txt").write_text("".join(f"{k}: {n}\n" for k, n in enumerate(names, start=1)))
    return src, dst


@pytest.fixture()
def voc_root(tmp_path: Path) -> Path:
    return make_voc(tmp_path / "data")


@pytest.fixture()
def coco_root(tmp_path: Path) -> Path:
    return make_coco(tmp_path / "data")


@pytest.fixture()
def context_root(tmp_path: Path) -> Path:
    return make_context(tmp_path / "data")


@pytest.fixture()
def custom_root(tmp_path: Path) -> Path:
    return make_custom(tmp_path / "data" / "custom")


@pytest.fixture(scope="session")
def synth():
    """This module's builders and tables (tests use ``synth.stripes(...)`` etc. instead of
    importing conftest, which is fragile with several conftest.py files)."""
    return _THIS_MODULE
